"""Print a batch run's wall time and its CPU split between the batch process and its workers.

Usage: python benchmarks/parent_cpu.py CASES.jsonl [--runs 4] [--baseline DIR ...]

Each run is `ionm-logic batch CASES -o OUT --jobs J` in a fresh process of a tree's code (this
tree and each --baseline, run with PYTHONPATH set to it), for J = 1 and 2, runs taken in turn
over every tree. The batch process reads its own CPU (RUSAGE_SELF: start-up, reading, routing,
receiving outcomes, writing) apart from its reaped workers' (RUSAGE_CHILDREN). On a 2-core
machine what the batch process spends at `--jobs 2` is taken from the two workers; the wall
ratio `--jobs 1` / `--jobs 2` is printed per run pair. Figures, not assertions."""
import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

from batch_speed import byte_compile  # this folder is the script's: on sys.path

ROOT = Path(__file__).resolve().parent.parent

_RUN = r'''
import resource, runpy, sys, time
start = time.perf_counter()
sys.argv = ["ionm-logic", "batch", sys.argv[1], "-o", sys.argv[2], "--jobs", sys.argv[3]]
try:
    runpy.run_module("ionm_logic", run_name="__main__", alter_sys=True)
except SystemExit:
    pass
own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
print("%.3f %.3f %.3f" % (time.perf_counter() - start, own.ru_utime + own.ru_stime,
                          workers.ru_utime + workers.ru_stime), file=sys.stderr)
'''


def run(tree: Path, cases: Path, out: Path, jobs: int) -> list:
    """[wall s, batch process CPU s, workers' CPU s] of one run."""
    done = subprocess.run([sys.executable, "-c", _RUN, str(cases), str(out), str(jobs)], cwd=str(tree),
                          env=dict(os.environ, PYTHONPATH=str(tree)), capture_output=True, text=True, check=True)
    return [float(x) for x in done.stderr.strip().splitlines()[-1].split()]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("cases", type=Path)
    ap.add_argument("--runs", type=int, default=4)
    ap.add_argument("--baseline", type=Path, action="append", default=[])
    args = ap.parse_args()
    trees = [t.resolve() for t in args.baseline] + [ROOT]
    for tree in trees:
        byte_compile(tree)
    figures = {tree: {1: [], 2: []} for tree in trees}
    for _ in range(args.runs):
        for tree in trees:
            for jobs in (1, 2):
                figures[tree][jobs].append(run(tree, args.cases.resolve(), Path(f"/tmp/parent-cpu-{jobs}.jsonl"), jobs))
    print("tree | jobs | wall s | batch process CPU s | workers' CPU s (medians) | wall ratio jobs 1 / jobs 2, each run")
    for tree in trees:
        ratios = [one[0] / two[0] for one, two in zip(figures[tree][1], figures[tree][2])]
        for jobs in (1, 2):
            med = [statistics.median(col) for col in zip(*figures[tree][jobs])]
            print(f"{tree.name} | {jobs} | {med[0]:.2f} | {med[1]:.2f} | {med[2]:.2f} | "
                  + (", ".join(f"{r:.2f}" for r in ratios) if jobs == 1 else ""))


if __name__ == "__main__":
    main()
