"""Print the in-process CPU cost of one decision on generated cases, for this tree and any
other trees given (e.g. a worktree of an older commit), side by side in one run.

Usage: python benchmarks/engine_speed.py [--cases 400] [--warm 100] [--baseline DIR ...] [--rss-cases N]
                                        [--instructions N]

Each tree decides in its own interpreter: `--warm` cases first (the engine keeps what it learns
across cases, as a batch worker does), then three passes over fresh generated cases — full
proofs and missing documentation; proofs without the missing-documentation search; the
determinations alone — and the CPU milliseconds per case of each pass. With --rss-cases N, this
tree's engine also decides N generated cases and its RSS is printed at each tenth (what the
engine keeps across cases is bounded: engine.RULE_MEMO_ENTRIES, engine.SUBSET_UNIONS).

With --instructions N (needs valgrind), each tree also counts the machine instructions of one
decision as a batch worker makes it (batch.decide_record: parse, pose, decide with full proofs
and missing documentation, render a JSON line), under callgrind: a run deciding the warm cases,
and one deciding N more; their difference over N. Instruction counts do not move with the
machine's load or clock, so they compare trees when CPU seconds are too noisy to. This tree is
counted twice, with the decision memo on (a batch's default; every generated case is distinct, so
each is a miss) and off (--memo-mb 0): their difference is what a memo miss costs.
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


RSS_CHILD = r"""
import sys
from ionm_logic.api import explain, knowledge_base, tune_memory_for_many_cases
from ionm_logic.case import parse_case
def rss():
    return int(open("/proc/self/status").read().split("VmRSS:")[1].split()[0]) / 1024
kb = knowledge_base()
tune_memory_for_many_cases()
lines = open(sys.argv[1], "rb").read().splitlines()
step = max(1, len(lines) // 10)
print(f"{0:>8} cases: RSS {rss():.0f} MB")
for i, line in enumerate(lines, 1):
    explain(kb, parse_case(line))
    if i % step == 0:
        print(f"{i:>8} cases: RSS {rss():.0f} MB")
"""


COUNT_CHILD = r"""
import sys
from ionm_logic import batch
from ionm_logic.batch import Options, open_source
options = Options() if sys.argv[4] == "default" else Options(memo_bytes=int(sys.argv[4]))
batch.use_options(options)
batch._init_worker(options)
records = list(open_source(sys.argv[1]).records())
warm, count = int(sys.argv[2]), int(sys.argv[3])
for record in records[:warm + count]:
    batch.decide_record(record)
"""


def instructions(tree: Path, cases_file: Path, warm: int, count: int, memo: str = "default") -> float:
    """Instructions per decision of `tree`'s batch worker code (callgrind), after `warm` cases;
    `memo`: "default" (the tree's own Options()) or the memo's bytes ("0": off)."""
    totals = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (0, count):
            done = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={tmp}/out",
                                   sys.executable, "-c", COUNT_CHILD, str(cases_file), str(warm), str(n), memo],
                                  env=dict(os.environ, PYTHONPATH=str(tree)), cwd=str(tree), check=True,
                                  capture_output=True, text=True)
            totals.append(int(done.stderr.split("Collected :")[1].split()[0]))
    return (totals[1] - totals[0]) / count


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
    ap.add_argument("--rss-cases", type=int, default=0, help="also print this tree's RSS over this many cases")
    ap.add_argument("--instructions", type=int, default=0, metavar="N",
                    help="also count instructions per case over N cases under valgrind (minutes per tree)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cases_file = Path(tmp) / "cases.jsonl"
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_cases.py"),
                        str(args.warm + 3 * args.cases), str(cases_file)], check=True)
        trees = [ROOT] + [Path(b).resolve() for b in args.baseline]
        figures = {tree: measure(tree, cases_file, args.warm, args.cases) for tree in trees}
        counts = {tree: instructions(tree, cases_file, args.warm, args.instructions) for tree in trees} \
            if args.instructions else {}
        memo_off = instructions(ROOT, cases_file, args.warm, args.instructions, "0") if args.instructions else None
    headers = ["CPU ms per case"] + [str(tree) for tree in trees]
    rows = [[label] + [f"{figures[tree][i]:.2f}" for tree in trees] for i, (label, _o) in enumerate(PASSES)]
    rows.append(["cases per CPU-second, full"] + [f"{1000 / figures[tree][0]:.0f}" for tree in trees])
    if counts:
        rows.append([f"million instructions per case, batch worker ({args.instructions} cases)"]
                    + [f"{counts[tree] / 1e6:.2f}" for tree in trees])
        rows.append(["  the same, this tree with the memo off (--memo-mb 0)", f"{memo_off / 1e6:.2f}"]
                    + [""] * (len(trees) - 1))
    print(tabulate(rows, headers=headers))
    if args.rss_cases:
        with tempfile.TemporaryDirectory() as tmp:
            cases_file = Path(tmp) / "cases.jsonl"
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_cases.py"), str(args.rss_cases),
                            str(cases_file)], check=True)
            subprocess.run([sys.executable, "-c", RSS_CHILD, str(cases_file)], env=dict(os.environ, PYTHONPATH=str(ROOT)),
                           check=True)
    try:
        print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    except OSError:
        pass


if __name__ == "__main__":
    main()
