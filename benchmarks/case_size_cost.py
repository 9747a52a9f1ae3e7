"""Measure how a case's decision time grows with its size, up to the input limits: service lines
(every field left undocumented, so the missing-documentation search does all it can) and the
length of a diagnosis code; and the number of operated levels, at its first sight (the engine's
cross-case memo answers a level set it has seen for free). Prints figures side by side; the
growth should be linear (for levels too: one rule joins every operated level with every other,
and its square should not show beside the per-level work up to the spine's 29 levels).

Usage: python benchmarks/case_size_cost.py [--repeat 5]
"""
import argparse
import json
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tabulate import tabulate  # noqa: E402

from ionm_logic.api import explain_case, knowledge_base  # noqa: E402
from ionm_logic.case import LIMITS, parse_case  # noqa: E402

CODES = ["95938", "95939", "95861", "95940", "95941", "G0453", "95937", "95955", "92585", "95867"]


def timed(kb, doc, repeat):
    case = parse_case(json.dumps(doc))
    explain_case(kb, case)  # warm
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        explain_case(kb, case)
        runs.append(time.perf_counter() - started)
    return statistics.median(runs) * 1000


SPINE = [f"C{i}" for i in range(1, 8)] + [f"T{i}" for i in range(1, 13)] + [f"L{i}" for i in range(1, 6)] \
    + [f"S{i}" for i in range(1, 6)]


def first_sight(warm_doc, doc, repeat):
    """Median ms of deciding `doc` in an engine that decided only `warm_doc` before: each run in a
    new thread, which loads its own engine (engines are per thread), so nothing learnt from `doc`
    carries over."""
    runs = []

    def run():
        kb = knowledge_base()
        explain_case(kb, parse_case(json.dumps(warm_doc)))
        case = parse_case(json.dumps(doc))
        started = time.perf_counter()
        explain_case(kb, case)
        runs.append(time.perf_counter() - started)

    for _ in range(repeat):
        thread = threading.Thread(target=run)
        thread.start()
        thread.join()
    return statistics.median(runs) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    kb = knowledge_base()
    base = json.loads((ROOT / "examples" / "alif-plif-l5-s1.json").read_text())
    base["clinical"] = {}
    base["monitoring"] = {}
    rows = []
    for n in (1, 10, 25, 50, LIMITS["services"]):
        doc = dict(base, services=[{"code": CODES[i % len(CODES)], "units": 1} for i in range(n)])
        ms = timed(kb, doc, args.repeat)
        rows.append(["service lines", n, f"{ms:.1f}", f"{ms / n:.2f}"])
    for length in (4, 8, 16, LIMITS["code_chars"]):
        doc = dict(base, diagnoses=[{"code": ("M54.16" + "9" * length)[:length]} for _ in range(LIMITS["list_items"])])
        ms = timed(kb, doc, args.repeat)
        rows.append([f"{LIMITS['list_items']} diagnoses, code length", length, f"{ms:.1f}", f"{ms / length:.2f}"])
    spine = json.loads((ROOT / "examples" / "alif-plif-l5-s1.json").read_text())
    warm = dict(spine, procedure=dict(spine["procedure"], levels=["S1"]))
    for n in (1, 3, 10, 17, 29):
        levels = SPINE[-4 - n:-4] if n < 29 else SPINE[:29]  # ending at S1: the lumbar, then thoracic, ones
        doc = dict(spine, procedure=dict(spine["procedure"], levels=levels))
        ms = first_sight(warm, doc, args.repeat)
        rows.append(["operated levels, first sight (reference case)", n, f"{ms:.1f}", f"{ms / n:.2f}"])
    print(tabulate(rows, headers=["grows", "size", "ms per case (median)", "ms per unit"]))


if __name__ == "__main__":
    main()
