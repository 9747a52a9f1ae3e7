"""Batch on a real Dask cluster (a LocalCluster of two single-threaded worker processes): the same
bytes as --jobs 1, records in input order, rules loaded once per worker on one engine thread."""
import json
import os
import subprocess
import sys

import duckdb
import pytest

from conftest import ROOT

distributed = pytest.importorskip("distributed", reason="the [dask] extra is part of [test]: pip install '.[test]'")

from ionm_logic.cluster import decide_on_dask, worker_state  # noqa: E402

CLI = [sys.executable, "-m", "ionm_logic"]
GENERATE = ROOT / "benchmarks" / "generate_cases.py"


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  worker_dashboard_address=None,
                                  silence_logs=40) as local:
        with distributed.Client(local) as client:
            yield local.scheduler_address, client


@pytest.fixture(scope="module")
def claims(tmp_path_factory):
    path = tmp_path_factory.mktemp("dask") / "claims.jsonl"
    subprocess.run([sys.executable, str(GENERATE), "400", str(path), "--bad", "3", "--seed", "99"], check=True)
    return path


def test_a_dask_batch_writes_the_same_bytes_as_jobs_1_and_loads_the_rules_once_per_worker(cluster, claims, tmp_path):
    address, client = cluster
    one = tmp_path / "one.jsonl"
    subprocess.run(CLI + ["batch", str(claims), "-o", str(one), "--jobs", "1"], check=True, capture_output=True)
    for attempt in (1, 2):
        on_dask = tmp_path / f"dask{attempt}.jsonl"
        run = subprocess.run(CLI + ["batch", str(claims), "-o", str(on_dask), "--dask", address],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        assert "403 record(s), 400 decided, 3 error(s)" in run.stderr
        assert on_dask.read_bytes() == one.read_bytes()
    states = client.run(worker_state, ())
    assert len(states) == 2
    for state in states.values():
        # Two batches (and, in the other tests, other options): each worker process loaded the
        # shipped rules once, on its one engine thread.
        assert state["loads"] == 1 and state["engine_thread"] is not None
        assert state["sha256"] == json.loads(one.read_text().splitlines()[0])["knowledge_base"]["sha256"]


def test_a_parquet_table_on_dask_gives_the_rows_jobs_1_gives(cluster, tmp_path):
    address, _client = cluster
    tables = ROOT / "examples" / "tables"
    outputs = {}
    for label, extra in (("one", ["--jobs", "1"]), ("dask", ["--dask", address])):
        target = tmp_path / f"{label}.parquet"
        run = subprocess.run(CLI + ["batch", "claims.parquet", "-o", str(target), *extra], cwd=tables,
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        outputs[label] = duckdb.sql(f"SELECT * FROM read_parquet('{target}')").fetchall()
    assert outputs["dask"] == outputs["one"] and len(outputs["one"]) == 15
    # Other options (table rows, no text) reuse the loaded rules: still one load per worker.
    assert [s["loads"] for s in _client.run(worker_state, ()).values()] == [1, 1]


def test_the_notebook_function_returns_what_batch_writes_in_input_order(cluster, claims):
    _address, client = cluster
    lines = claims.read_text().splitlines()[:140]  # one bad line among them
    expected = subprocess.run(CLI + ["batch", str(_write(claims, lines))], capture_output=True, text=True,
                              check=True).stdout
    assert '"ionm-logic/error/v1"' in expected
    cases = [json.loads(line) if line.startswith("{") and line.endswith("}") else line for line in lines]
    got = decide_on_dask(cases, client)
    # Each record's `source` (and an error record's `file`) names where it came from: the file and
    # line for batch, the list's position for the notebook. Everything else is the same bytes.
    assert [r["source"]["file"] for r in got] == ["<notebook>"] * len(lines)
    assert [r["source"]["record"] for r in got] == list(range(1, len(lines) + 1))

    def without_source(record):
        return json.dumps({k: v for k, v in record.items() if k not in ("source", "file")}, ensure_ascii=False,
                          separators=(",", ":"))

    assert [without_source(r) for r in got] == [without_source(json.loads(x)) for x in expected.splitlines()]
    assert [r.get("case_id") for r in got][:3] == [json.loads(lines[i]).get("case_id") for i in range(3)]


def _write(claims, lines):
    path = claims.with_name("first140.jsonl")
    path.write_text("\n".join(lines) + "\n")
    return path


def test_an_unreachable_scheduler_is_bad_input_not_a_traceback(claims):
    run = subprocess.run(CLI + ["batch", str(claims), "--dask", "tcp://127.0.0.1:9"], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 2 and "cannot reach the scheduler" in run.stderr and "Traceback" not in run.stderr


def test_workers_whose_rules_differ_from_the_clients_stop_the_batch_before_any_decision(cluster, claims, tmp_path):
    address, _client = cluster
    # A --rules folder given relative to the client's folder: the workers (started elsewhere)
    # cannot load it, so their knowledge base is not the client's.
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "empty.dl").write_text("% an empty rule file of the author's own\n")
    run = subprocess.run(CLI + ["batch", str(claims), "--dask", address, "--rules", "extra"], cwd=tmp_path,
                         capture_output=True, text=True)
    assert run.returncode == 2, run.stderr
    assert "Dask worker tcp://" in run.stderr and "has knowledge base failed" in run.stderr
    assert run.stdout == "" and "Traceback" not in run.stderr


def _trust_unchecked_rules(folder: str) -> None:
    """On a worker: what test_batch_time_limit's BOOT does in a batch process (the rule-set cache
    holds the fixture's rules compiled without `check`)."""
    from pathlib import Path

    from ionm_logic import api
    from ionm_logic.engine import RuleSet, rule_files, shipped_rules_dir
    from ionm_logic.lang.parse import parse_text

    sources = rule_files(shipped_rules_dir(), "rules") + rule_files(Path(folder), None)
    api._RULESETS[api._key([Path(folder)])] = RuleSet([parse_text(p.read_text(), n) for p, n in sources], [],
                                                     "unchecked")


def test_a_case_past_the_time_limit_on_dask_is_one_error_record_and_every_other_is_the_bytes_of_jobs_1(tmp_path):
    # The rules never finish on a case with two operated levels (test_batch_time_limit.py). The
    # engine then holds its process's GIL for good: without a limit kept from outside that
    # process, the Dask worker stops answering and the batch never ends (the timeout below).
    from test_batch_time_limit import BOOT, HANGS, batch_file, case

    # Dask chunks are 32 records: hangs early in the first, at its end and at the second's start.
    hangs = {1, 31, 32}
    claims = batch_file(tmp_path, "claims.jsonl",
                        [case(f"c{n}", ["L5", "S1"] if n in hangs else ["L5"]) for n in range(40)])
    env = dict(os.environ, IONM_LOGIC_TIME_LIMIT="2")

    def batch(out, *where):
        return subprocess.run([sys.executable, "-c", BOOT, str(HANGS), "batch", str(claims), "-o", str(out),
                               "--rules", str(HANGS), *where], capture_output=True, text=True, env=env, timeout=150)

    local = batch(tmp_path / "one.jsonl", "--jobs", "1")
    assert local.returncode == 0, local.stderr
    # A cluster of its own: the fixture's workers count the rule sets they load (above). Its HTTP
    # port is any free one, the fixture's cluster holding the default.
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address="127.0.0.1:0",
                                  worker_dashboard_address=None, silence_logs=40) as local_cluster:
        with distributed.Client(local_cluster) as client:
            client.run(_trust_unchecked_rules, str(HANGS))
            on_dask = batch(tmp_path / "dask.jsonl", "--dask", local_cluster.scheduler_address)
            assert on_dask.returncode == 0, on_dask.stderr
            assert "40 record(s), 37 decided, 3 error(s) (3 past the time limit)" in on_dask.stderr
            records = [json.loads(line) for line in (tmp_path / "dask.jsonl").read_bytes().splitlines()]
            assert [n for n, r in enumerate(records) if r["schema"] == "ionm-logic/error/v1"] == sorted(hangs)
            assert "did not finish within 2 s" in records[31]["error"]["message"]
            assert (tmp_path / "dask.jsonl").read_bytes() == (tmp_path / "one.jsonl").read_bytes()
            # Both workers still answer: the hung decisions cost their forked children, not them.
            assert len(client.run(worker_state, (str(HANGS),))) == 2
