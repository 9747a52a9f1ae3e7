"""Print batch throughput, proof overhead and memory figures (figures, not assertions).

Usage: python benchmarks/batch_speed.py [--cases 10000] [--rss-cases 100000] [--skip-rss]

- throughput of `ionm-logic batch` with full proofs over N generated cases, --jobs 1 and 2;
- the same decisions without proofs or missing-documentation search, in process (the ratio is
  the explanation overhead);
- peak RSS of a --jobs 1 batch over --rss-cases cases, sampled as it runs (flat = streaming).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ionm_logic"]


def generate(n: int, path: Path, bad: int = 0) -> None:
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_cases.py"), str(n), str(path),
                    "--bad", str(bad)], check=True)


def batch(path: Path, jobs: int, out: Path) -> float:
    start = time.perf_counter()
    subprocess.run(CLI + ["batch", str(path), "-o", str(out), "--jobs", str(jobs)], check=True,
                   stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def in_process(path: Path, limit: int):
    sys.path.insert(0, str(ROOT))
    from ionm_logic.api import explain, knowledge_base, tune_memory_for_many_cases
    from ionm_logic.case import parse_case

    kb = knowledge_base()
    tune_memory_for_many_cases()  # as a batch worker does
    cases = [parse_case(line) for line in path.read_bytes().splitlines()[:limit]]
    for case in cases[:50]:
        explain(kb, case)
    timings = {}
    for label, kwargs in (("full (proofs + missing documentation)", {}),
                          ("proofs, no missing-documentation search", {"missing": False}),
                          ("determination only (no proofs, no missing documentation)", {"missing": False, "proofs": False})):
        start = time.perf_counter()
        for case in cases:
            explain(kb, case, **kwargs)
        timings[label] = (time.perf_counter() - start) / len(cases)
    return timings


def peak_rss(path: Path, out: Path):
    """Peak RSS (MB) of the batch process (its VmHWM), and its RSS sampled at each tenth of the run."""
    proc = subprocess.Popen(CLI + ["batch", str(path), "-o", str(out)], stderr=subprocess.DEVNULL)
    samples, peak = [], 0.0
    time.sleep(1.0)  # the first sample is taken once the interpreter has started
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
    ap.add_argument("--cases", type=int, default=10000)
    ap.add_argument("--rss-cases", type=int, default=100000)
    ap.add_argument("--skip-rss", action="store_true")
    args = ap.parse_args()
    figures = {"cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = tmp / "cases.jsonl"
        generate(args.cases, cases)
        for jobs in (1, 2):
            seconds = batch(cases, jobs, tmp / f"out{jobs}.jsonl")
            figures[f"batch --jobs {jobs}, full proofs, cases/s"] = round(args.cases / seconds, 1)
        figures["--jobs 1 and --jobs 2 outputs identical"] = (tmp / "out1.jsonl").read_bytes() == (tmp / "out2.jsonl").read_bytes()
        for label, per_case in in_process(cases, min(args.cases, 2000)).items():
            figures[f"in process, {label}, ms/case"] = round(per_case * 1000, 2)
        full = figures["in process, full (proofs + missing documentation), ms/case"]
        bare = figures["in process, determination only (no proofs, no missing documentation), ms/case"]
        figures["explanation overhead (full / determination only)"] = round(full / bare, 2)
        if not args.skip_rss:
            big = tmp / "big.jsonl"
            generate(args.rss_cases, big)
            peak, tenths = peak_rss(big, tmp / "big-out.jsonl")
            figures[f"peak RSS over {args.rss_cases} cases, MB"] = round(peak, 1)
            figures["RSS at each tenth of that run, MB"] = tenths
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
