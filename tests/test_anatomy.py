"""Where the cord ends against the operated levels (domain.md §1), decided through the rules."""
import pytest

from conftest import by_code, case_with, decide, rules_of, walk

SPINE_ONLY = [{"code": "95938", "units": 1}, {"code": "95939", "units": 1}]


def ssep(kb, **changes):
    doc = case_with(**{"services": SPINE_ONLY, **changes})
    return by_code(decide(kb, doc))["95938"]


@pytest.mark.parametrize("levels, at_risk", [
    (["L1", "L2"], True),    # at the conus: L1 holds cord
    (["L2", "L3"], False),   # below the default last cord level
    (["L5", "S1"], False),
    (["T12", "L1"], True),
    (["T10", "T11", "T12"], True),
    (["C5", "C6"], True),
    (["S1", "L2"], False),   # order of the list does not matter
    (["L3", "L1"], True),
])
def test_default_cord_end_is_l1(kb, levels, at_risk):
    # In cervical surgery the commercial cervical clause (domain.md §8.4) replaces P2 unless an
    # exception holds: documented myelopathy (severe cord compression) is one, so the cord-at-risk
    # finding shows through its cervical-exception form.
    cervical = levels[0].startswith("C")
    line = ssep(kb, **{"procedure.levels": levels, **({"clinical.myelopathy": True} if cervical else {})})
    if at_risk:
        assert line["determination"] == "medically_necessary"
        assert rules_of(line) == ({"CR-P2-CORD-AT-RISK-CERVICAL-EXCEPTION"} if cervical else {"CR-P2-CORD-AT-RISK"})
    else:
        assert line["determination"] == "not_medically_necessary"
        assert {"PACK-CORD-PATHWAY-ABSENT", "CR-P3-BELOW-CORD"} <= rules_of(line)


def test_documented_conus_at_l5_puts_the_cord_at_risk_at_l5_s1(kb):
    line = ssep(kb, **{"clinical.conus_level": "L5"})
    assert line["determination"] == "medically_necessary"
    atoms = [n["atom"] for f in line["findings"] for n in walk(f["proof"])]
    assert 'documented_conus_level(case, "L5")' in atoms


def test_documented_high_conus_takes_l1_l2_below_the_cord(kb):
    line = ssep(kb, **{"clinical.conus_level": "T12", "procedure.levels": ["L1", "L2"]})
    assert line["determination"] == "not_medically_necessary"


def test_documented_conus_wins_over_a_tethered_cord(kb):
    line = ssep(kb, **{"clinical.conus_level": "L1", "clinical.tethered_cord": True,
                       "procedure.levels": ["L4", "L5"]})
    assert line["determination"] == "not_medically_necessary"


@pytest.mark.parametrize("changes", [
    {"clinical.tethered_cord": True},
    {"diagnoses": [{"code": "Q06.8", "text": "tethered cord"}]},
])
def test_tethered_cord_by_flag_or_diagnosis_puts_the_cord_at_risk(kb, changes):
    line = ssep(kb, **changes)
    assert line["determination"] == "medically_necessary"
    assert "CR-P3-BELOW-CORD" not in rules_of(line)


def test_below_cord_proof_binds_top_level_cord_end_and_comparison(kb):
    line = ssep(kb, **{"procedure.levels": ["S1", "L4", "L5"]})
    finding = next(f for f in line["findings"] if f["rule"] == "PACK-CORD-PATHWAY-ABSENT")
    nodes = list(walk(finding["proof"]))
    assert any(n["node"] == "case" and n["pointer"] == "/procedure/levels/1" and '"L4"' in n["atom"] for n in nodes)
    assert any(n["node"] == "fact" and n["atom"] == 'default_last_cord_level("L1")' for n in nodes)
    assert any(n["node"] == "builtin" and n["atom"] == "23 > 20" for n in nodes)
