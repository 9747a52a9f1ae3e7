"""Print batch cost per case, --jobs scaling, the decision memo's hit and miss cost and the time
limit's cost, side by side in one run (figures, not assertions).

Usage: python benchmarks/batch_speed.py [--cases 2000] [--runs 3] [--baseline DIR ...] [--rss-cases N]

Each configuration is `python -m ionm_logic batch` over the same generated files:

- the generator mix (every case distinct) and a mix where half the cases repeat an earlier one
  under a new case id (`generate_cases.py --repeat 0.5`);
- CPU seconds (user + system, the batch process and its workers) and wall seconds, for --jobs 1
  and --jobs 2, with full proofs and missing documentation: cases per CPU-second is the cost per
  case; wall throughput is what a user waits, and on a shared machine it follows the load
  (printed before and after), so --jobs 2 / --jobs 1 is given by wall and by CPU per case;
- the memo off (--memo-mb 0) beside it on: the miss cost on the distinct mix, the hit gain on the
  repeating one; and, in process, the CPU time of a memo hit and a miss against a fresh decision;
- the time limit on (the default: even --jobs 1 decides in one worker process, the parent timing
  each record) beside off (IONM_LOGIC_TIME_LIMIT=off: --jobs 1 decides in the batch process);
- whether every output file is byte-identical to the first configuration's --jobs 1 output;
- with --baseline DIR (another source tree of the project, e.g. `git archive main | tar -x -C
  DIR`; may be given more than once), that tree's code too, run with PYTHONPATH set to it and its
  own defaults;
- each figure the median of --runs runs, the runs taken in turn over every configuration (the
  load of a shared machine drifts: this way it falls on all of them alike), and the spread of
  cases per CPU-second with --jobs 1 (least–most) beside it;
- with --rss-cases, peak RSS of a --jobs 1 batch over that many cases (flat = streaming);
- every tree's package byte-compiled before the runs, as an installed package is (pip compiles
  at install, and Python on first import): a machine that sets PYTHONDONTWRITEBYTECODE would
  otherwise compile it from source in every run, about 0.1 s of each start-up.
"""
import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def generate(n: int, path: Path, *extra) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_cases.py"), str(n), str(path), *extra],
                   check=True)


def byte_compile(tree: Path) -> None:
    # compileall writes the caches whatever PYTHONDONTWRITEBYTECODE says; stale ones are
    # replaced, as Python replaces them on import.
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(tree / "ionm_logic")], check=True,
                   stdout=subprocess.DEVNULL)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def batch(tree: Path, cases: Path, out: Path, jobs: int, extra=(), env=None) -> tuple:
    """(CPU seconds, wall seconds) of one batch run of `tree`'s code; its workers are reaped by
    the batch process, so their CPU time is counted too."""
    env = dict(os.environ, PYTHONPATH=str(tree), **(env or {}))
    cpu, start = _children_cpu(), time.perf_counter()
    subprocess.run([sys.executable, "-m", "ionm_logic", "batch", str(cases), "-o", str(out), "--jobs", str(jobs),
                    *extra], check=True, stderr=subprocess.DEVNULL, env=env, cwd=str(tree))
    return _children_cpu() - cpu, time.perf_counter() - start


def memo_costs(cases: Path, limit: int) -> dict:
    """In process, CPU ms per case: a fresh decision (memo off), the same cases each a first
    sight for the memo (a miss: key, decide, cut, remember), and again (every one a hit).

    The engine keeps what it learns across cases, so every pass starts from the same warm
    engine: one untimed pass first, then fresh and miss passes alternated, the best of two each."""
    sys.path.insert(0, str(ROOT))
    from ionm_logic import batch as batching

    records = [batching.Record(n, n, cases.name, raw) for n, raw in enumerate(cases.read_bytes().splitlines()[:limit], 1)]

    def timed(memo_bytes: int, passes: int = 1) -> float:
        batching._init_worker(batching.Options(memo_bytes=memo_bytes))
        for _ in range(passes - 1):
            for record in records:
                batching.decide_record(record)
        start = time.process_time()
        for record in records:
            batching.decide_record(record)
        return (time.process_time() - start) / len(records) * 1000

    timed(0)  # warm the engine on these very cases
    fresh, miss = [], []
    for _ in range(2):
        fresh.append(timed(0))
        miss.append(timed(1 << 30))
    return {"fresh decision (memo off)": min(fresh), "memo miss": min(miss), "memo hit": timed(1 << 30, passes=2)}


def peak_rss(tree: Path, path: Path, out: Path):
    """Peak RSS (MB) of the batch process (its VmHWM), and its RSS sampled at each tenth of the run."""
    proc = subprocess.Popen([sys.executable, "-m", "ionm_logic", "batch", str(path), "-o", str(out)],
                            stderr=subprocess.DEVNULL, env=dict(os.environ, PYTHONPATH=str(tree)))
    samples, peak = [], 0.0
    time.sleep(1.0)
    while proc.poll() is None:
        try:
            with open(f"/proc/{proc.pid}/status") as fh:
                fields = {l.split(":")[0]: int(l.split()[1]) / 1024 for l in fh if l.startswith(("VmRSS:", "VmHWM:"))}
            samples.append(fields["VmRSS"])
            peak = max(peak, fields["VmHWM"])
        except (OSError, KeyError, ValueError):
            pass
        time.sleep(1.0)
    tenths = [round(samples[int(i * (len(samples) - 1) / 9)], 1) for i in range(10)] if samples else []
    return peak, tenths


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--baseline", type=Path, action="append", default=[],
                    help="another source tree, measured beside this one")
    ap.add_argument("--runs", type=int, default=3, help="runs of each configuration; figures are their medians")
    ap.add_argument("--rss-cases", type=int, default=0)
    args = ap.parse_args()
    limit_off = {"IONM_LOGIC_TIME_LIMIT": "off"}
    configs = [(f"tree {tree.resolve().name} (its defaults)", tree.resolve(), (), None) for tree in args.baseline] + [
        ("memo off, limit on", ROOT, ("--memo-mb", "0"), None),
        ("memo on, limit on (defaults)", ROOT, (), None),
        ("memo off, limit off", ROOT, ("--memo-mb", "0"), limit_off),
        ("memo on, limit off", ROOT, (), limit_off)]
    for tree in {tree for _label, tree, _extra, _env in configs}:
        byte_compile(tree)
    print(f"{os.cpu_count()} CPUs; load average before the run: {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        mixes = {"distinct": tmp / "distinct.jsonl", "half repeated": tmp / "repeated.jsonl"}
        generate(args.cases, mixes["distinct"])
        generate(args.cases, mixes["half repeated"], "--repeat", "0.5")
        reference, figures = {}, {}
        for run in range(args.runs):
            for mix, cases in mixes.items():
                for label, tree, extra, env in configs:
                    for jobs in (1, 2):
                        out = tmp / f"{mix}-{label}-{jobs}.jsonl".replace(" ", "_").replace(",", "").replace("(", "")
                        cpu, wall = batch(tree, cases, out, jobs, extra, env)
                        reference.setdefault(mix, out.read_bytes())
                        found = figures.setdefault((mix, label), {"cpu1": [], "wall1": [], "cpu2": [], "wall2": [],
                                                                  "same": True})
                        found[f"cpu{jobs}"].append(cpu)
                        found[f"wall{jobs}"].append(wall)
                        found["same"] = found["same"] and out.read_bytes() == reference[mix]
            print(f"... run {run + 1} of {args.runs} done (load average {os.getloadavg()[0]:.1f})", flush=True)
        for mix in mixes:
            for label, *_rest in configs:
                found = figures[(mix, label)]
                cpu1, wall1, cpu2, wall2 = (statistics.median(found[k]) for k in ("cpu1", "wall1", "cpu2", "wall2"))
                per_cpu = sorted(args.cases / c for c in found["cpu1"])
                ratios = [w1 / w2 for w1, w2 in zip(found["wall1"], found["wall2"])]
                rows.append([mix, label, f"{args.cases / cpu1:.0f} ({per_cpu[0]:.0f}–{per_cpu[-1]:.0f})",
                             f"{cpu1 / args.cases * 1000:.2f}", f"{args.cases / cpu2:.0f}",
                             f"{args.cases / wall1:.0f}", f"{args.cases / wall2:.0f}",
                             f"{statistics.median(ratios):.2f}", f"{cpu2 / cpu1:.2f}", "yes" if found["same"] else "NO"])
        costs = memo_costs(mixes["distinct"], min(args.cases, 1000))
        if args.rss_cases:
            big = tmp / "big.jsonl"
            generate(args.rss_cases, big)
            peak, tenths = peak_rss(ROOT, big, tmp / "big-out.jsonl")
    headers = ["mix", "configuration", "cases/CPU-s --jobs 1 (spread)", "CPU ms/case", "cases/CPU-s --jobs 2", "cases/s --jobs 1",
               "cases/s --jobs 2", "wall jobs 1/jobs 2", "CPU per case jobs 2/jobs 1", "bytes = first row"]
    try:
        from tabulate import tabulate

        print(tabulate(rows, headers=headers))
    except ImportError:  # pragma: no cover - tabulate is a dependency of the package
        print("\n".join(" | ".join(map(str, r)) for r in [headers] + rows))
    print("in process, CPU ms per case (distinct mix, jobs 1): "
          + ", ".join(f"{label} {ms:.2f}" for label, ms in costs.items())
          + f"; a hit costs {costs['memo hit'] / costs['fresh decision (memo off)']:.3f} of a fresh decision,"
          f" a miss {costs['memo miss'] / costs['fresh decision (memo off)']:.3f}")
    if args.rss_cases:
        print(f"peak RSS over {args.rss_cases} cases: {peak:.1f} MB; at each tenth: {tenths}")
    print(f"load average after the run: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
