"""Print batch throughput on a Dask LocalCluster and from Parquet tables beside --jobs 1 and 2
(figures, not assertions).

Usage: python benchmarks/scale_speed.py [--cases 2000] [--workers 2]

- `batch cases.jsonl` with --jobs 1, --jobs 2, and --dask on a LocalCluster of --workers
  single-threaded worker processes: a first run (each worker loading the rules), then a second on
  as many cases of another seed (rules loaded; the cases new to the workers, so no decision memo
  hit flatters it); whether --jobs 1, --jobs 2 and the first Dask run wrote the same bytes;
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
    """CPU seconds of this process and every process under it: a Dask worker decides in a child
    it forks (the per-record time limit) and keeps between batches, which RUSAGE_CHILDREN counts
    only once it has been waited for, so living descendants are read from /proc."""
    total = sum(getattr(resource.getrusage(who), field) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                for field in ("ru_utime", "ru_stime"))
    stats = {}  # pid -> its /proc stat fields from the state on (the name before them may hold spaces)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stats[int(entry.name)] = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                pass  # ended meanwhile
    todo = [os.getpid()]
    while todo:
        parent = todo.pop()
        for pid, fields in stats.items():
            if int(fields[1]) == parent:  # its parent; utime and stime are fields 14 and 15
                total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
                todo.append(pid)
    return total


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
        for name, seed in (("cases.jsonl", "2026"), ("other.jsonl", "2027")):
            subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_cases.py"), str(n), str(tmp / name),
                            "--seed", seed], check=True)
        for jobs in (1, 2):
            seconds, cpu = measured(["batch", "cases.jsonl", "-o", f"jobs{jobs}.jsonl", "--jobs", str(jobs)], tmp)
            figures[f"batch --jobs {jobs}, cases/s"] = round(n / seconds, 1)
            figures[f"batch --jobs {jobs}, cases per CPU-second (all its processes)"] = round(n / cpu, 1)
        from distributed import Client

        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          worker_dashboard_address=None,
                          silence_logs=40) as cluster, Client(cluster) as client:
            runs = (("first run, workers load the rules", "cases.jsonl"),
                    ("second run, rules loaded, other cases", "other.jsonl"))
            for number, (run, cases) in enumerate(runs, 1):
                workers_before = sum(client.run(_cpu).values())
                seconds, cpu = measured(["batch", cases, "-o", f"dask{number}.jsonl", "--dask",
                                         cluster.scheduler_address], tmp)
                workers = sum(client.run(_cpu).values()) - workers_before
                label = f"batch --dask ({args.workers} workers x 1 thread), {run}"
                figures[f"{label}, cases/s"] = round(n / seconds, 1)
                figures[f"{label}, cases per worker CPU-second"] = round(n / workers, 1)
                figures[f"{label}, client CPU ms per case"] = round(cpu / n * 1000, 2)
        outputs = {(tmp / name).read_bytes() for name in ("jobs1.jsonl", "jobs2.jsonl", "dask1.jsonl")}
        figures["--jobs 1, --jobs 2 and --dask outputs identical"] = len(outputs) == 1
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
