"""Hypothesis strategies for case files, bounded to keep each example fast."""
from hypothesis import strategies as st

LEVELS = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] \
    + [f"S{i}" for i in range(1, 6)]
AT_OR_ABOVE_L1 = LEVELS[: LEVELS.index("L1") + 1]
SPINE_KINDS = ["fusion", "decompression", "discectomy", "deformity_correction", "tumor_resection"]
OTHER = [("endarterectomy", "vascular"), ("craniotomy", "vascular"), ("posterior_fossa", "cranial"),
         ("tumor_resection", "cranial"), ("thyroidectomy", "neck"), ("aortic_repair", "vascular"),
         ("peripheral_nerve", "peripheral"), ("epilepsy_surgery", "cranial"),
         ("microvascular_decompression", "cranial"), ("craniotomy", "cranial")]
DIAGNOSES = ["M51.36", "M51.360", "M54.50", "M54.16", "M51.17", "M47.12", "M50.00", "M48.062", "Q06.8", "M41.26",
             "Z98.1", "G95.20", "M48.82", "S32.010A"]  # the last three: cord compression, OPLL, fracture (§8)
SERVICES = [("95938", None), ("95939", None), ("95861", None), ("95861", "triggered_emg"), ("95937", None),
            ("95955", None), ("95941", None), ("95940", None), ("G0453", None), ("92585", None), ("95867", None),
            ("95999", None), ("95999", "train_of_four"), ("95930", None)]
maybe_bool = st.sampled_from([None, True, False])


@st.composite
def cases(draw, levels=st.lists(st.sampled_from(LEVELS), min_size=1, max_size=4, unique=True),  # ≤4 levels: real spans
          spine_only=False, clinical_defaults=False):
    spine = spine_only or draw(st.booleans()) or draw(st.booleans())  # mostly spinal cases
    if spine:
        kind, region, lv = draw(st.sampled_from(SPINE_KINDS)), "spine", draw(levels)
    else:
        (kind, region), lv = draw(st.sampled_from(OTHER)), []
    services = draw(st.lists(st.sampled_from(SERVICES), min_size=1, max_size=5))  # ≤5 lines keeps proofs fast
    doc = {
        "schema": "ionm-logic/case/v1",
        "case_id": draw(st.text(max_size=12)),  # any text; length does not matter to the rules
        "payer": "commercial-reference",
        "date_of_service": "2024-06-12",
        "procedure": {
            "kind": kind, "region": region, "levels": lv,
            # ≤2 surgical codes: only 35301 decides anything, the others only ride along
            "codes": draw(st.lists(st.sampled_from(["35301", "22558", "22630", "63047"]), max_size=2, unique=True)),
            "approaches": draw(st.lists(st.sampled_from(["anterior", "posterior", "lateral"]), max_size=2, unique=True)),
            "instrumentation": draw(st.lists(st.sampled_from(["pedicle_screws", "plate", "rods"]), max_size=2, unique=True)),
            # domain.md §8.9 flags and minutes (minutes around the unit thresholds of a few units)
            "near_eloquent_cortex": draw(maybe_bool), "cranial_nerve_tumor": draw(maybe_bool),
            "high_risk_thyroid": draw(maybe_bool),
            "anesthesia_minutes": draw(st.one_of(st.none(), st.integers(1, 240))),
        },
        # ≤3 diagnoses: enough to combine axial pain, radiculopathy, myelopathy and tethering
        "diagnoses": [{"code": c, "text": "dx"} for c in
                      draw(st.lists(st.sampled_from(DIAGNOSES), max_size=3, unique=True))],
        "clinical": {} if clinical_defaults else {
            "myelopathy": draw(maybe_bool), "radiculopathy": draw(maybe_bool),
            "tethered_cord": draw(maybe_bool),
            "conus_level": draw(st.one_of(st.none(), st.none(), st.sampled_from(LEVELS))),
        },
        "history": [],
        "monitoring": {
            "setting": draw(st.sampled_from([None, "in_room", "remote"])),
            "technologist_in_room": draw(maybe_bool),
            "minutes": draw(st.one_of(st.none(), st.integers(1, 240))),
            "professional": {
                "member_of_surgical_team": draw(maybe_bool), "real_time": draw(maybe_bool),
                "concurrent_cases": draw(st.one_of(st.none(), st.integers(1, 4))),  # limits seen: 1 (payer), 3 (Nuwer)
                "exclusive_minutes": draw(st.one_of(st.none(), st.integers(1, 120))),
            },
            "report": {"findings": draw(st.sampled_from([None, "normal", "changes"])), "interventions": []},
        },
        # units 1-8, or past a day (97): time rules compare units with minutes and with a day (§8.6)
        "services": [{"code": c, "units": draw(st.sampled_from([1, 2, 4, 8, 97])), **({"modality": m} if m else {})}
                     for c, m in services],
    }
    return doc
