"""Print batch throughput on a Dask LocalCluster and from Parquet tables beside --jobs 1 and 2
(figures, not assertions).

Usage: python benchmarks/scale_speed.py [--cases 2000] [--workers 2]

- `batch cases.jsonl` with --jobs 1, --jobs 2, and --dask on a LocalCluster of --workers
  single-threaded worker processes (first run: includes each worker loading the rules; second:
  rules already loaded), all on the same generated cases, and whether the outputs are the same bytes;
- the same cases as a Parquet line table: reading alone (DuckDB to case records), and
  `batch claims.parquet -o out.parquet` with --jobs 1 and 2.
Wall times include the CLI's start (about 0.3 s); cases/s = cases / wall seconds.
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, "-m", "ionm_logic"]
sys.path.insert(0, str(ROOT))


def timed(args, cwd) -> float:
    return measured(args, cwd)[0]


def measured(args, cwd):
    """Wall seconds, and CPU seconds of the command with every process it waited for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(CLI + args, cwd=cwd, check=True, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def _cpu(dask_worker=None):
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cases", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    from distributed import LocalCluster

    from ionm_logic.tables import read_records, rows_of_case, source_for, write_rows

    n = args.cases
    figures = {"cpus": os.cpu_count(), "load average at start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_cases.py"), str(n), str(tmp / "cases.jsonl")],
                       check=True)
        for jobs in (1, 2):
            seconds, cpu = measured(["batch", "cases.jsonl", "-o", f"jobs{jobs}.jsonl", "--jobs", str(jobs)], tmp)
            figures[f"batch --jobs {jobs}, cases/s"] = round(n / seconds, 1)
            figures[f"batch --jobs {jobs}, cases per CPU-second (all its processes)"] = round(n / cpu, 1)
        from distributed import Client

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          worker_dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            for run in ("first run, workers load the rules", "second run, rules loaded"):
                workers_before = sum(client.run(_cpu).values())
                seconds, cpu = measured(["batch", "cases.jsonl", "-o", "dask.jsonl", "--dask",
                                         cluster.scheduler_address], tmp)
                workers = sum(client.run(_cpu).values()) - workers_before
                label = f"batch --dask ({args.workers} workers x 1 thread), {run}"
                figures[f"{label}, cases/s"] = round(n / seconds, 1)
                figures[f"{label}, cases per worker CPU-second"] = round(n / workers, 1)
                figures[f"{label}, client CPU ms per case"] = round(cpu / n * 1000, 2)
        same = (tmp / "dask.jsonl").read_bytes() == (tmp / "jobs1.jsonl").read_bytes() == (tmp / "jobs2.jsonl").read_bytes()
        figures["--jobs 1, --jobs 2 and --dask outputs identical"] = same
        docs = [json.loads(line) for line in (tmp / "cases.jsonl").read_text().splitlines()]
        rows = [r for d in docs for r in rows_of_case(d)]
        write_rows(rows, str(tmp / "claims.parquet"))
        figures["Parquet line table: rows"] = len(rows)
        start = time.perf_counter()
        count = sum(1 for _ in read_records(source_for(str(tmp / "claims.parquet"), None, None, None)))
        seconds = time.perf_counter() - start
        figures["reading the Parquet table into case records (DuckDB), cases/s"] = round(count / seconds, 1)
        for jobs in (1, 2):
            seconds = timed(["batch", "claims.parquet", "-o", f"out{jobs}.parquet", "--jobs", str(jobs)], tmp)
            figures[f"batch claims.parquet -o out.parquet --jobs {jobs}, cases/s"] = round(n / seconds, 1)
    figures["load average at end"] = os.getloadavg()[0]
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
