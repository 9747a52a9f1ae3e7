"""Print the in-process CPU cost of one decision on generated cases, for this tree and any
other trees given (e.g. a worktree of an older commit), side by side in one run.

Usage: python benchmarks/engine_speed.py [--cases 400] [--warm 100] [--baseline DIR ...]

Each tree decides in its own interpreter: `--warm` cases first (the engine keeps what it learns
across cases, as a batch worker does), then three passes over fresh generated cases — full
proofs and missing documentation; proofs without the missing-documentation search; the
determinations alone — and the CPU milliseconds per case of each pass.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
PASSES = (("full proofs + missing documentation", {}),
          ("proofs, no missing-documentation search", {"missing": False}),
          ("determinations alone", {"missing": False, "proofs": False}))

CHILD = r"""
import json, sys, time
from ionm_logic.api import explain, knowledge_base, tune_memory_for_many_cases
from ionm_logic.case import parse_case
cases_file, warm, count, passes = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4])
kb = knowledge_base()
tune_memory_for_many_cases()
lines = open(cases_file, "rb").read().splitlines()
cases = [parse_case(line) for line in lines]
for case in cases[:warm]:
    explain(kb, case)
out = []
for i, (_label, options) in enumerate(passes):
    part = cases[warm + i * count: warm + (i + 1) * count]
    start = time.process_time()
    for case in part:
        explain(kb, case, **options)
    out.append((time.process_time() - start) / len(part) * 1000)
print(json.dumps(out))
"""


def measure(tree: Path, cases_file: Path, warm: int, count: int) -> list:
    env = dict(os.environ, PYTHONPATH=str(tree))
    done = subprocess.run([sys.executable, "-c", CHILD, str(cases_file), str(warm), str(count), json.dumps(PASSES)],
                          env=env, cwd=str(tree), check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=400, help="fresh cases per pass")
    ap.add_argument("--warm", type=int, default=100)
    ap.add_argument("--baseline", action="append", default=[], help="another source tree to measure beside this one")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases_file = Path(tmp) / "cases.jsonl"
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_cases.py"),
                        str(args.warm + 3 * args.cases), str(cases_file)], check=True)
        trees = [ROOT] + [Path(b).resolve() for b in args.baseline]
        figures = {tree: measure(tree, cases_file, args.warm, args.cases) for tree in trees}
    headers = ["CPU ms per case"] + [str(tree) for tree in trees]
    rows = [[label] + [f"{figures[tree][i]:.2f}" for tree in trees] for i, (label, _o) in enumerate(PASSES)]
    rows.append(["cases per CPU-second, full"] + [f"{1000 / figures[tree][0]:.0f}" for tree in trees])
    print(tabulate(rows, headers=headers))
    try:
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    except OSError:
        pass


if __name__ == "__main__":
    main()
