"""Print cold and warm explain timings for the reference case (figures, not assertions).

Usage: python benchmarks/explain_speed.py [--runs N]
Cold: median wall time of `ionm-logic explain` on the reference case in a new process, beside
the floor `python -c "import pyDatalog, click"`; with and without the parsed-rule cache
(~/.cache/ionm-logic, keyed by the rule files' sha256). Warm: median time of one explain with full
proofs and missing-documentation search, knowledge base already loaded.
"""
import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASE = ROOT / "examples" / "alif-plif-l5-s1.json"


def wall(cmd, runs, env=None):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    runs = ap.parse_args().runs
    cli = shutil.which("ionm-logic")
    cmd = [cli] if cli else [sys.executable, "-m", "ionm_logic"]
    floor = wall([sys.executable, "-c", "import pyDatalog, click"], runs)
    cold_text = wall(cmd + ["explain", str(CASE)], runs)
    cold_json = wall(cmd + ["explain", str(CASE), "--format", "json"], runs)
    import os

    uncached = wall(cmd + ["explain", str(CASE), "--format", "json"], runs, env={**os.environ, "IONM_LOGIC_CACHE": "off"})

    sys.path.insert(0, str(ROOT))
    from ionm_logic.api import explain, knowledge_base
    from ionm_logic.case import parse_case

    start = time.perf_counter()
    kb = knowledge_base()
    load = time.perf_counter() - start
    case = parse_case(CASE.read_bytes())
    explain(kb, case)
    warm, bare = [], []
    for _ in range(50):
        start = time.perf_counter()
        explain(kb, case)
        warm.append(time.perf_counter() - start)
        start = time.perf_counter()
        explain(kb, case, missing=False)
        bare.append(time.perf_counter() - start)
    figures = {
        "import floor (python -c 'import pyDatalog, click'), median s": round(floor, 3),
        "cold explain, text, median s": round(cold_text, 3),
        "cold explain, json, median s": round(cold_json, 3),
        "cold explain, json, rule files parsed afresh (no parsed-rule cache), median s": round(uncached, 3),
        "knowledge base load in process, s": round(load, 3),
        "warm explain with full proofs and missing documentation, median ms": round(statistics.median(warm) * 1000, 1),
        "warm explain with full proofs, no missing-documentation search, median ms": round(statistics.median(bare) * 1000, 1),
    }
    for name, value in figures.items():
        print(f"{name}: {value}")
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
