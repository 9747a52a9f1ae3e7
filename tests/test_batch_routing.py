"""Batch routes records to workers: a repeat of a case goes to the worker given its twin, whose
decision memo answers it, and any other record waits for the worker given its payer, or the
first worker free once that one's own records are taken, so distinct cases still spread over
the workers. Routing changes no output byte.

Each run is batch.run in this process with worker processes (the time limit on: even one job
decides in a worker, as the command's default). Worker processes are forked: a test that wraps
decide_record here has its wrapper run in the workers too, which is how a test sees which worker
decided a record without the output saying so."""
import json
import os
import random
import subprocess
import sys
import tempfile

import pytest

from conftest import ROOT, case_with

from ionm_logic import batch

pytestmark = pytest.mark.skipif("fork" not in __import__("multiprocessing").get_all_start_methods(),
                                reason="seeing which worker decided a record needs forked workers")

MEMO = 32 * 1024 * 1024
LEVELS = [["L4"], ["L5"], ["L3", "L4"], ["T10"], ["C5", "C6"]]


@pytest.fixture(autouse=True)
def limit_on(monkeypatch):
    monkeypatch.setenv("IONM_LOGIC_TIME_LIMIT", "60")


@pytest.fixture
def stamped(monkeypatch):
    """Outcomes carry the pid of the process that decided them (not part of the output)."""
    decide = batch.decide_record

    def deciding(record):
        outcome = decide(record)
        outcome.worker = os.getpid()
        return outcome

    monkeypatch.setattr(batch, "decide_record", deciding)


def records_of(raws):
    return [batch.Record(n, n, "cases.jsonl", raw) for n, raw in enumerate(raws, 1)]


def run(records, jobs, memo_bytes=MEMO):
    """(output bytes, summary, {record number: pid that decided it}) of one batch run."""
    seen = {}
    with tempfile.TemporaryFile() as out:
        summary = batch.run(iter(records), batch.Sink(out.fileno(), "output"), batch.Options(memo_bytes=memo_bytes),
                            jobs=jobs, observers=[lambda o: seen.setdefault(o.number, getattr(o, "worker", None))])
        out.seek(0)
        return out.read(), summary, seen


def repeating():
    """Five distinct cases each 12 times under its own case id, shuffled, and two lines that are
    no case; with which distinct case each record is (None for the two)."""
    rng = random.Random(14)
    which = [n % len(LEVELS) for n in range(12 * len(LEVELS))]
    rng.shuffle(which)
    raws = [json.dumps(dict(case_with(**{"procedure.levels": LEVELS[k]}), case_id=f"r-{n}")).encode()
            for n, k in enumerate(which)]
    raws[7:7] = [b"not json at all"]
    raws[30:30] = [b'{"schema": "ionm-logic/case/v1", "case_id": "cut short"']
    which[7:7] = [None]
    which[30:30] = [None]
    return records_of(raws), which


def test_with_two_jobs_every_repeat_of_a_case_is_answered_by_the_memo_of_the_worker_given_its_twin(stamped):
    records, which = repeating()
    out, summary, seen = run(records, jobs=2)
    # 60 cases, 5 distinct: each distinct case is decided once, and its 11 repeats are memo
    # hits. Chunks of 16 contiguous records handed to whichever worker was free (no routing)
    # would give both workers some of the five in the first 32 records alone: at most 50 hits.
    assert summary.records == 62 and summary.errors == 2
    assert summary.remembered == 60 - len(LEVELS)
    # Every record of one distinct case was decided by one worker.
    workers = {k: {seen[r.number] for r, w in zip(records, which) if w == k} for k in range(len(LEVELS))}
    assert all(len(pids) == 1 for pids in workers.values()), workers
    # The bytes are those of one worker, and of no memo at all.
    one, one_summary, _ = run(records, jobs=1)
    fresh, fresh_summary, _ = run(records, jobs=2, memo_bytes=0)
    assert out == one == fresh
    assert one_summary.remembered == 60 - len(LEVELS) and fresh_summary.remembered == 0


def test_distinct_cases_are_spread_over_both_workers(stamped, tmp_path):
    claims = tmp_path / "claims.jsonl"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_cases.py"), "40", str(claims)], check=True)
    records = records_of(claims.read_bytes().splitlines())
    out, summary, seen = run(records, jobs=2)
    # No case repeats, so nothing is bound to a worker: both are free when the first records
    # are read, and each takes a whole chunk (16 records) of them before either is done.
    assert summary.remembered == 0
    counts = sorted(list(seen.values()).count(pid) for pid in set(seen.values()))
    assert len(counts) == 2 and counts[0] >= 16, counts
    assert out == run(records, jobs=1)[0]


def test_the_routing_key_leaves_out_only_the_case_ids_value():
    doc = case_with(**{"procedure.levels": ["L4"]})
    key = lambda d: batch._route_key(batch.Record(1, 1, "x", json.dumps(d).encode()))  # noqa: E731
    assert key(dict(doc, case_id="a")) == key(dict(doc, case_id='b "quoted" \\ id'))
    assert key(dict(doc, case_id="a")) != key(case_with(**{"procedure.levels": ["L5"], "case_id": "a"}))
    # Records whose routing would be wasted: an unreadable one, a table input's (its pointers
    # name its own rows, so it skips the memo).
    assert batch._route_key(batch.Record(1, 1, "x", b"", problem="too long")) is None
    assert batch._route_key(batch.Record(1, 1, "x", b"{}", cells=lambda p: p)) is None


def test_the_routing_table_forgets_the_least_recently_seen_case_past_its_bound():
    router = batch._Router(2, 2)
    doc = lambda levels, n: json.dumps(case_with(**{"procedure.levels": levels, "case_id": str(n)})).encode()  # noqa: E731
    a, b, c = ["L4"], ["L5"], ["T10"]
    taken = lambda slot: [r.number for r in router.take(slot, 16)]  # noqa: E731

    def add(n, levels):
        router.add(batch.Record(n, n, "x", doc(levels, n)))

    add(1, a)
    assert taken(0) == [1]        # a new case: to the worker that asks first
    add(2, b)
    assert taken(1) == [2]
    add(3, a)                     # a seen again: now more recent than b
    add(4, c)
    assert taken(1) == [4]        # the repeat of a is not worker 1's; c is free
    assert taken(0) == [3]
    # Three cases bound, room for two: b, seen least recently, is forgotten, so its next
    # record is free for whichever worker asks; a repeat of a still waits for worker 0.
    assert len(router.routes) == 2
    add(5, b)
    add(6, a)
    assert taken(1) == [5]
    assert taken(1) == []
    assert taken(0) == [6]


def test_a_dead_workers_records_are_named_as_runs_of_numbers():
    assert batch._spans([3, 5, 6, 7, 12]) == "3, 5-7, 12"
    assert batch._spans([1, 2, 3]) == "1-3"


def test_distinct_cases_wait_for_the_worker_given_their_payer_and_a_free_worker_takes_the_oldest_of_another():
    # Two payers' distinct cases, interleaved: the first payer seen goes to worker 0's pool,
    # the second to worker 1's (the worker given fewer records so far). Each worker takes its
    # own pool's records first, so its engine sees one payer's cases; a worker whose pool is
    # empty takes the oldest record of another's, so neither waits while work is open.
    router = batch._Router(2, 64)
    payers = {n: ("cms-lcd-l34623" if n % 2 else "anthem-cg-surg-104") for n in range(1, 9)}
    for n, payer in payers.items():
        levels = [["L4"], ["L5"], ["T10"], ["C5"], ["L3"], ["L2"], ["T11"], ["C6"]][n - 1]  # no two alike
        doc = case_with(**{"procedure.levels": levels, "case_id": str(n)})
        router.add(batch.Record(n, n, "x", json.dumps(dict(doc, payer=payer)).encode()))
    assert [r.number for r in router.take(0, 2)] == [1, 3]  # cms, the first payer seen
    assert [r.number for r in router.take(1, 2)] == [2, 4]  # anthem
    assert [r.number for r in router.take(1, 2)] == [6, 8]
    assert [r.number for r in router.take(1, 2)] == [5, 7]  # its own pool empty: worker 0's oldest
    assert router.take(0, 2) == []
