"""Write N generated case files as JSON lines (deterministic for a seed): spine and non-spine,
three payers, in-room and remote, with undocumented fields.

Usage: python benchmarks/generate_cases.py N OUT.jsonl [--seed S] [--bad K] [--repeat F]

--repeat F makes about a fraction F of the cases copies of an earlier case under a new case id
(the same facts: what a decision memo can answer); without it, the cases are as before.
"""
import argparse
import json
import random

LEVELS = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] \
    + [f"S{i}" for i in range(1, 6)]
SPINE = ["fusion", "decompression", "discectomy", "deformity_correction", "tumor_resection"]
OTHER = [("endarterectomy", "vascular", ["35301"]), ("craniotomy", "vascular", []), ("posterior_fossa", "cranial", []),
         ("tumor_resection", "cranial", []), ("thyroidectomy", "neck", []), ("aortic_repair", "vascular", []),
         ("peripheral_nerve", "peripheral", [])]
PAYERS = [("commercial-reference", "2020-01-01", "2026-06-30"), ("cms-lcd-l34623", "2016-01-01", "2026-06-30"),
          ("anthem-cg-surg-104", "2020-01-01", "2026-06-30")]
CODES = ["95938", "95939", "95861", "95937", "95955", "95941", "95940", "G0453", "92585", "95867", "95907"]
DX = ["M51.36", "M54.50", "M54.16", "M47.12", "M48.062", "Q06.8", "M41.26", "I65.22", "D33.3"]


def case(rng: random.Random, n: int) -> dict:
    payer, start, end = rng.choice(PAYERS)
    year = rng.randint(int(start[:4]) + 1, int(end[:4]) - 1)
    if rng.random() < 0.7:
        top = rng.randrange(len(LEVELS) - 3)
        proc = {"kind": rng.choice(SPINE), "region": "spine", "levels": LEVELS[top:top + rng.randint(1, 4)],
                "approaches": rng.sample(["anterior", "posterior"], rng.randint(1, 2)),
                "instrumentation": rng.sample(["pedicle_screws", "rods", "plate"], rng.randint(0, 2))}
    else:
        kind, region, codes = rng.choice(OTHER)
        proc = {"kind": kind, "region": region, "codes": codes}
    maybe = lambda: rng.choice([True, False, None])  # noqa: E731
    remote = rng.random() < 0.5
    return {
        "schema": "ionm-logic/case/v1", "case_id": f"gen-{n:06d}", "payer": payer,
        "date_of_service": f"{year}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
        "procedure": proc,
        "diagnoses": [{"code": c} for c in rng.sample(DX, rng.randint(0, 2))],
        "clinical": {"myelopathy": maybe(), "radiculopathy": maybe(), "tethered_cord": rng.random() < 0.05 or None},
        "monitoring": {"setting": "remote" if remote else "in_room",
                       "professional": {"member_of_surgical_team": rng.choice([False, False, False, True, None]),
                                        "real_time": rng.choice([True, True, None, False]),
                                        "concurrent_cases": rng.choice([1, 1, 2, None])},
                       "report": {"findings": rng.choice(["normal", "changes", None]), "interventions": []}},
        "services": [{"code": c, "units": rng.randint(1, 8)} for c in rng.sample(CODES, rng.randint(1, 5))],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("n", type=int)
    ap.add_argument("out")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--bad", type=int, default=0, help="also write this many invalid lines, spread evenly")
    ap.add_argument("--repeat", type=float, default=0.0, help="fraction of cases that copy an earlier case")
    args = ap.parse_args()
    rng = random.Random(args.seed)
    # A separate stream decides the repeats, so the fresh cases stay those of the seed.
    repeats, earlier = random.Random(args.seed + 1), []
    bad_every = (args.n // args.bad) if args.bad else 0
    with open(args.out, "w") as fh:
        for n in range(args.n):
            if bad_every and n % bad_every == bad_every // 2:
                fh.write(rng.choice(['{"schema": "ionm-logic/case/v1", "case_id": "bad"', "not json at all",
                                     json.dumps({"schema": "ionm-logic/case/v1", "case_id": "bad-level",
                                                 "payer": "commercial-reference", "date_of_service": "2024-01-01",
                                                 "procedure": {"kind": "fusion", "region": "spine", "levels": ["L7"]},
                                                 "services": [{"code": "95938"}]})]) + "\n")
            if earlier and repeats.random() < args.repeat:
                doc = dict(repeats.choice(earlier), case_id=f"gen-{n:06d}")
            else:
                doc = case(rng, n)
                if args.repeat:
                    earlier.append(doc)
            fh.write(json.dumps(doc) + "\n")


if __name__ == "__main__":
    main()
