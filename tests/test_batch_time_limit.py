"""Batch keeps a time limit on each decision: a case the engine never finishes is one error record
in its place, the run goes on, and every other record is the bytes it would have been.

The rules are the symmetric and transitive fixture, which `check` rejects: as in
test_time_limit.py they are compiled without the check, standing for a shape `check` does not
know yet. No option gives a batch unchecked rules, so each run is the real CLI in a real process
whose rule-set cache (api._RULESETS) was given the unchecked rules for the fixture's folder
before the command ran (BOOT). The fixture's closure never ends on a case with two operated
levels and is empty, so it ends, on a case with one: the hang depends on the case."""
import csv
import io
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import time

import pytest

from conftest import REFERENCE, ROOT

from ionm_logic import batch
from ionm_logic.batch import ERROR_SCHEMA

HANGS = ROOT / "tests" / "fixtures" / "rules" / "a-symmetric-and-transitive-predicate"
LIMIT = 3  # seconds: long enough for a one-level case on a loaded machine, short for the test

BOOT = """
import sys
from pathlib import Path
from ionm_logic import api
from ionm_logic.engine import RuleSet, rule_files, shipped_rules_dir
from ionm_logic.lang.parse import parse_text
from ionm_logic.cli import main

folder = Path(sys.argv[1])
sources = rule_files(shipped_rules_dir(), "rules") + rule_files(folder, None)
api._RULESETS[api._key([folder])] = RuleSet([parse_text(p.read_text(), n) for p, n in sources], [], "unchecked")
sys.argv = ["ionm-logic"] + sys.argv[2:]
main()
"""


def case(case_id, levels):
    doc = json.loads(REFERENCE.read_text())
    doc["case_id"] = case_id
    doc["procedure"]["levels"] = levels
    return doc


def batch_file(folder, name, docs):
    folder.mkdir(exist_ok=True)
    path = folder / name
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def run(claims, out, jobs, fmt, limit=LIMIT):
    env = dict(os.environ, IONM_LOGIC_TIME_LIMIT=str(limit))
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", BOOT, str(HANGS), "batch", str(claims), "-o", str(out),
                           "--jobs", str(jobs), "--format", fmt, "--rules", str(HANGS)],
                          capture_output=True, text=True, env=env, timeout=120)
    return proc, time.monotonic() - start


@pytest.fixture(scope="module")
def cases(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("limit")
    first, last = case("one level first", ["L5"]), case("one level last", ["S1"])
    return {
        # The middle case has the reference's two operated levels: the fixture never ends on it.
        "hangs": batch_file(tmp / "hangs", "claims.jsonl", [first, case("two levels", ["L5", "S1"]), last]),
        # The same three records with a middle case of one level: what every other record must be.
        # (the same file name: each record's source names it)
        "ends": batch_file(tmp / "ends", "claims.jsonl", [first, case("two levels", ["L4"]), last]),
    }


@pytest.mark.parametrize("jobs", [1, 2])
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_a_case_past_the_limit_is_one_error_record_in_its_place_and_the_rest_are_unchanged(cases, tmp_path,
                                                                                          jobs, fmt):
    out, clean = tmp_path / f"out.{fmt}", tmp_path / f"clean.{fmt}"
    proc, took = run(cases["hangs"], out, jobs, fmt)
    # Exit 0: like a bad case, the record says what went wrong (README, batch's exit statuses);
    # the run took about the limit (plus starting up), not forever.
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert LIMIT <= took < LIMIT + 40
    assert "3 record(s), 2 decided, 1 error(s) (1 past the time limit)" in proc.stderr
    ended, _took = run(cases["ends"], clean, jobs, fmt)
    assert ended.returncode == 0, ended.stderr
    message = f"the decision did not finish within {LIMIT} s (IONM_LOGIC_TIME_LIMIT)"
    if fmt == "jsonl":
        records, expected = out.read_bytes().splitlines(), clean.read_bytes().splitlines()
        assert len(records) == 3
        assert records[0] == expected[0] and records[2] == expected[2]
        error = json.loads(records[1])
        assert error["schema"] == "ionm-logic/error/v1" and error["case_id"] == "two levels"
        assert error["error"]["message"].startswith(message) and "run ionm-logic check" in error["error"]["message"]
        assert error["source"] == {"record": 2, "file": "claims.jsonl", "line": 2}
    else:
        rows = list(csv.reader(io.StringIO(out.read_text())))
        expected = list(csv.reader(io.StringIO(clean.read_text())))
        # One row per service line of each decided case, one row for the error record.
        decided = [r for r in rows[1:] if r[0] != "2"]
        assert decided == [r for r in expected[1:] if r[0] != "2"] and decided
        middle = [r for r in rows[1:] if r[0] == "2"]
        assert len(middle) == 1
        row = dict(zip(rows[0], middle[0]))
        assert (row["file"], row["line"], row["case_id"], row["determination"]) == ("claims.jsonl", "2", "two levels",
                                                                                    "error")
        assert row["error"].startswith(message)
        assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])  # input order


def test_output_is_the_same_bytes_for_any_number_of_jobs(cases, tmp_path):
    outs = []
    for jobs in (1, 2, 3):
        out = tmp_path / f"out{jobs}.jsonl"
        proc, _took = run(cases["hangs"], out, jobs, "jsonl")
        assert proc.returncode == 0, proc.stderr
        outs.append(out.read_bytes())
    assert outs[0] == outs[1] == outs[2]


def test_every_case_past_the_limit_is_its_own_error_and_a_long_run_goes_on(tmp_path):
    # Hanging cases in a row, at a chunk's end and start (chunks are 16 records): each costs its
    # worker, each is one error, and the cases between them are decided.
    docs = []
    for n in range(20):
        docs.append(case(f"c{n}", ["L5", "S1"] if n in (1, 2, 15, 16) else ["L5"]))
    claims = batch_file(tmp_path, "many.jsonl", docs)
    out = tmp_path / "out.jsonl"
    proc, took = run(claims, out, 2, "jsonl", limit=2)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in out.read_bytes().splitlines()]
    assert [r.get("case_id") for r in records] == [f"c{n}" for n in range(20)]
    errors = [n for n, r in enumerate(records) if r["schema"] == "ionm-logic/error/v1"]
    assert errors == [1, 2, 15, 16]
    assert "20 record(s), 16 decided, 4 error(s) (4 past the time limit)" in proc.stderr
    # Two workers: the four hangs cost about two limits each side by side, not forever.
    assert took < 4 * 2 + 40


# A worker sends a chunk's outcomes together and notes when it begins each record in memory the
# parent reads: the limit is on each record, never on its chunk, and a record past it costs
# only itself. Each run below is batch.run in this process with forked workers, whose
# decide_record is this test's wrapper (the shipped rules; a record "hangs" by sleeping).
forked_only = pytest.mark.skipif("fork" not in multiprocessing.get_all_start_methods(),
                                 reason="the wrapped decide_record reaches workers only when they are forked")


def slowed(monkeypatch, seconds, hangs=()):
    decide = batch.decide_record

    def slow(record):
        time.sleep(600 if record.number in hangs else seconds)
        return decide(record)

    monkeypatch.setattr(batch, "decide_record", slow)


def chunk_run(monkeypatch, limit, count, chunk):
    monkeypatch.setenv("IONM_LOGIC_TIME_LIMIT", str(limit))
    records = [batch.Record(n, n, "claims.jsonl", json.dumps(case(f"c{n}", ["L5"] if n % 2 else ["L4"])).encode())
               for n in range(1, count + 1)]
    with tempfile.TemporaryFile() as out:
        summary = batch.run(iter(records), batch.Sink(out.fileno(), "output"), batch.Options(), jobs=1, chunk=chunk)
        out.seek(0)
        return out.read().splitlines(), summary


@forked_only
def test_the_limit_is_on_each_record_of_a_chunk_not_on_the_chunk(monkeypatch):
    # 8 records of 0.5 s in one chunk: 4 s for the chunk, past the 1.5 s limit; no record is.
    slowed(monkeypatch, 0.5)
    records, summary = chunk_run(monkeypatch, 1.5, 8, 8)
    assert (summary.records, summary.errors, summary.timeouts) == (8, 0, 0)
    assert [json.loads(r)["case_id"] for r in records] == [f"c{n}" for n in range(1, 9)]


@forked_only
def test_a_record_past_the_limit_late_in_a_chunk_costs_only_itself(monkeypatch):
    # Record 6 of a chunk of 8 hangs: its worker dies with the outcomes of records 1-5 unsent, so
    # the fresh worker decides them again with 7 and 8, and every one is the bytes it would be.
    monkeypatch.setenv("IONM_LOGIC_TIME_LIMIT", "off")
    expected, _summary = chunk_run(monkeypatch, "off", 8, 8)
    slowed(monkeypatch, 0.2, hangs={6})
    records, summary = chunk_run(monkeypatch, 1.5, 8, 8)
    assert (summary.records, summary.errors, summary.timeouts) == (8, 1, 1)
    assert records[:5] == expected[:5] and records[6:] == expected[6:]
    error = json.loads(records[5])
    assert error["schema"] == ERROR_SCHEMA and error["case_id"] == "c6" and error["source"]["record"] == 6
