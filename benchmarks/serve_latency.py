"""Print order-sign latency (p50/p95/p99) and requests/s of `ionm-logic serve` (figures, not assertions).

Usage: python benchmarks/serve_latency.py [--requests N] [--example FILE]
Starts a real uvicorn on 127.0.0.1 with --workers 1 and 2; for 1, 4 and 8 concurrent clients
(threads, one keep-alive httpx connection each) posts the CDS Hooks order-sign call built from
an order Bundle in examples/fhir/ (the reference case by default) N times in all, after a
warm-up, and prints one table. Every answer is checked: status 200 and the same bytes as the
first answer. A second table splits one call's time in this process (medians): FHIR structure
validation, reading the Bundle as a case, deciding with proofs, the CRD response, and the same
case decided from its case file — the engine's own cost on this machine at this moment; then
the same call sent to an engine process as the server sends it (the cost of the process hop
that keeps the time limit, serve.EngineProcess), and how long an engine process takes to start
with its rules loaded (what a request waits after a decision was stopped at the limit).
"""
import argparse
import json
import sys
import threading
import time
from pathlib import Path

import httpx
from tabulate import tabulate

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from test_serve import HOOK, Server, hook_request  # noqa: E402 - the tests' server starter and hook builder


def percentile(sorted_values, q):
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


def measure(base, body, clients, total):
    per_client = total // clients
    latencies, errors = [], []
    expected = httpx.post(base + HOOK, content=body, headers={"content-type": "application/json"}, timeout=60).content
    lock = threading.Lock()

    def run():
        mine = []
        with httpx.Client(timeout=60) as client:
            for _ in range(per_client):
                start = time.perf_counter()
                r = client.post(base + HOOK, content=body, headers={"content-type": "application/json"})
                mine.append(time.perf_counter() - start)
                if r.status_code != 200 or r.content != expected:
                    errors.append(r.status_code)
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    latencies.sort()
    return {"p50": percentile(latencies, 0.50) * 1000, "p95": percentile(latencies, 0.95) * 1000,
            "p99": percentile(latencies, 0.99) * 1000, "rps": len(latencies) / elapsed, "errors": len(errors)}


def median_ms(fn, runs=40):
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return f"{times[len(times) // 2] * 1000:.1f}"


def breakdown(example):
    from ionm_logic import api, serve
    from ionm_logic.case import parse_case
    from ionm_logic.fhir import crd, read
    from ionm_logic.inputs import Input

    kb = api.knowledge_base()
    call = hook_request(json.loads(Path(example).read_text()))
    bundle, _origins = serve._hook_bundle(call)
    fhir_case = read.read_bundle(bundle, kb)
    inp = Input(fhir_case.case, fhir_case.document, "", fhir_case)
    result = api.explain_input(kb, inp).document
    twin = parse_case((ROOT / "examples" / (Path(example).name.split(".")[0] + ".json")).read_bytes())
    for _ in range(5):
        serve.hook_call(kb, call)
    engine = serve.EngineProcess(api.rule_set(), seconds=60)
    try:
        for _ in range(5):
            engine.call(serve.hook_call, call)
        through_process = median_ms(lambda: engine.call(serve.hook_call, call))
        starts = []
        for _ in range(3):
            start = time.perf_counter()
            engine.restart()
            engine.call(serve.version_info)
            starts.append(time.perf_counter() - start)
    finally:
        engine.close()
    return [["whole hook call", median_ms(lambda: serve.hook_call(kb, call))],
            ["  FHIR structure (fhir.resources)", median_ms(lambda: read._validate_structure(bundle, ""))],
            ["  Bundle -> case (with the above)", median_ms(lambda: read.read_bundle(bundle, kb))],
            ["  decide, proofs, missing documentation", median_ms(lambda: api.explain_input(kb, inp))],
            ["  CRD response", median_ms(lambda: api.to_json(crd.cds_response(kb, inp, result)))],
            ["the twin case file decided (engine alone)", median_ms(lambda: api.explain_case(kb, twin))],
            ["whole hook call sent to an engine process", through_process],
            ["engine process start, rules loaded (of 3)", f"{sorted(starts)[1] * 1000:.0f}"]]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=800, help="requests per row (split over the clients)")
    parser.add_argument("--example", default=str(ROOT / "examples" / "fhir" / "alif-plif-l5-s1.order.json"))
    args = parser.parse_args()
    body = json.dumps(hook_request(json.loads(Path(args.example).read_text()))).encode()
    rows = []
    for workers in (1, 2):
        server = Server("--workers", str(workers))
        try:
            with httpx.Client(timeout=60) as client:  # warm-up: every worker's first answers
                for _ in range(40):
                    client.post(server.base + HOOK, content=body, headers={"content-type": "application/json"})
            for clients in (1, 4, 8):
                m = measure(server.base, body, clients, args.requests)
                rows.append([workers, clients, f"{m['p50']:.1f}", f"{m['p95']:.1f}", f"{m['p99']:.1f}",
                             f"{m['rps']:.0f}", m["errors"]])
        finally:
            server.stop()
    print(f"order-sign on {Path(args.example).name}, {args.requests} requests per row")
    print(tabulate(rows, headers=["workers", "clients", "p50 ms", "p95 ms", "p99 ms", "req/s", "errors"]))
    print()
    print(tabulate(breakdown(args.example), headers=["one call in process", "median ms"]))


if __name__ == "__main__":
    main()
