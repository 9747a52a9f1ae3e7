"""Batch under faults: Ctrl-C, SIGTERM, a killed worker, a full disk, a closed pipe downstream.
Each run ends promptly with one clear line and no traceback, exits non-zero, names the records
not decided, leaves only complete records and no worker process behind."""
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, alive, child_pids

GENERATE = ROOT / "benchmarks" / "generate_cases.py"
CLI = [sys.executable, "-m", "ionm_logic"]
# Long enough that no run finishes before the fault, short enough to fail fast on a hang.
HANG = 60


@pytest.fixture(scope="module")
def claims(tmp_path_factory):
    path = tmp_path_factory.mktemp("faults") / "claims.jsonl"
    subprocess.run([sys.executable, str(GENERATE), "3000", str(path)], check=True)
    return path


def _start(claims, target, jobs, limit=None, **kwargs):
    env = dict(os.environ)
    if limit is not None:
        env["IONM_LOGIC_TIME_LIMIT"] = limit
    return subprocess.Popen(CLI + ["batch", str(claims), "-o", str(target), "--jobs", str(jobs)],
                            stderr=subprocess.PIPE, start_new_session=True, env=env, **kwargs)


def _wait_for_output(target, size=50_000):
    deadline = time.time() + HANG
    while time.time() < deadline and (not target.exists() or target.stat().st_size < size):
        time.sleep(0.02)


def _finish(proc):
    """(stdout, stderr) of a run that must end; a hung one is killed, with its workers, and fails."""
    try:
        return proc.communicate(timeout=HANG)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"the run did not end within {HANG} s")


def _running(claims, tmp_path, jobs, limit=None):
    """(output path, process, its worker pids) of a batch started and well under way."""
    target = tmp_path / "out.jsonl"
    proc = _start(claims, target, jobs, limit)
    _wait_for_output(target)
    return target, proc, child_pids(proc.pid)


def _check_complete(target, claims, stderr: str, status: int, proc_status: int):
    """Only complete records, one clear error line naming the first record not decided."""
    assert proc_status == status, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    data = target.read_bytes()
    assert data == b"" or data.endswith(b"\n")
    records = [json.loads(line) for line in data.splitlines()]
    inputs = claims.read_text().splitlines()
    assert len(records) < len(inputs)
    assert [r["case_id"] for r in records] == [json.loads(line)["case_id"] for line in inputs[:len(records)]]
    match = re.search(r"(\d+) record\(s\) written, each complete; record (\d+) \(line (\d+)\)", lines[0])
    assert match and int(match.group(1)) == len(records) and int(match.group(2)) == len(records) + 1
    return records


# Issue 16 (a time limit on each batch decision): while the limit is on (the default), even
# --jobs 1 decides in one worker process, which the parent kills at the limit; with the limit
# off, --jobs 1 decides in the parent itself. Both must end on Ctrl-C the same way.
@pytest.mark.parametrize("jobs, limit, processes", [(1, None, 1), (1, "off", 0), (2, None, 2), (3, None, 3)])
def test_ctrl_c_ends_promptly_with_complete_records_and_exit_130(claims, tmp_path, jobs, limit, processes):
    """Issue 12: Ctrl-C under --jobs 2 printed worker tracebacks and sometimes hung with zombies.
    Ctrl-C on a terminal signals the whole process group: the workers get it too."""
    target, proc, workers = _running(claims, tmp_path, jobs, limit)
    assert len(workers) == processes
    os.killpg(proc.pid, signal.SIGINT)
    _out, err = _finish(proc)
    records = _check_complete(target, claims, err.decode(), 130, proc.returncode)
    assert records and "interrupted" in err.decode()
    assert not [w for w in workers if alive(w)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_sigterm_to_the_parent_ends_the_run_with_complete_records(claims, tmp_path, jobs):
    target, proc, workers = _running(claims, tmp_path, jobs)
    proc.send_signal(signal.SIGTERM)
    _out, err = _finish(proc)
    _check_complete(target, claims, err.decode(), 128 + signal.SIGTERM, proc.returncode)
    assert "SIGTERM" in err.decode()
    assert not [w for w in workers if alive(w)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_worker_killed_with_sigkill_ends_the_run_naming_the_records_not_decided(claims, tmp_path, jobs):
    # A worker killed by someone else, not by the time limit, is a failure of the run: the
    # parent cannot vouch for the records it held (issue 16 keeps this apart from a timeout).
    target, proc, workers = _running(claims, tmp_path, jobs)
    os.kill(workers[0], signal.SIGKILL)
    _out, err = _finish(proc)
    err = err.decode()
    _check_complete(target, claims, err, 1, proc.returncode)
    assert f"worker process {workers[0]} was killed by SIGKILL while deciding records" in err
    assert not [w for w in workers if alive(w)]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_batch_killed_with_sigkill_leaves_no_worker_behind(claims, tmp_path, jobs):
    # Nothing of the batch process runs after SIGKILL to stop its workers: each must find, once
    # its chunk is done, that the other end of its pipe is gone, and end by itself.
    target, proc, workers = _running(claims, tmp_path, jobs)
    assert len(workers) == jobs
    proc.kill()
    proc.wait()  # not communicate(): a worker left behind would hold its stderr open for good
    proc.stderr.close()
    deadline = time.time() + HANG
    while time.time() < deadline and any(alive(w) for w in workers):
        time.sleep(0.05)
    left = [w for w in workers if alive(w)]
    for w in left:
        os.kill(w, signal.SIGKILL)  # not left to run on after the test
    assert not left


def _file_size_limit(limit):
    def limit_it():
        # A file-size limit is a full disk the test can make: writes past it fail (EFBIG)
        # after a partial write, as they do with ENOSPC.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return limit_it


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_full_disk_leaves_no_truncated_last_record(claims, tmp_path, jobs):
    """Issue 16: a failed write left a truncated last record."""
    target = tmp_path / "out.jsonl"
    proc = subprocess.Popen(CLI + ["batch", str(claims), "-o", str(target), "--jobs", str(jobs)],
                            stderr=subprocess.PIPE, preexec_fn=_file_size_limit(300_001), start_new_session=True)
    _out, err = _finish(proc)
    records = _check_complete(target, claims, err.decode(), 2, proc.returncode)
    assert records and "-o/--output" in err.decode() and "cannot write" in err.decode()
    assert target.stat().st_size <= 300_001


def test_standard_output_on_a_full_disk_exits_2(claims):
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(CLI + ["batch", str(claims)], stdout=full, stderr=subprocess.PIPE, timeout=HANG * 3)
    err = proc.stderr.decode()
    assert proc.returncode == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [err.strip()] and "standard output: cannot write: No space left" in err
    assert "0 record(s) written, each complete; record 1 (line 1)" in err


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_closed_pipe_downstream_ends_the_run_with_one_line(claims, jobs):
    """`batch ... | head -1`: the reader goes away after one record."""
    proc = subprocess.Popen(CLI + ["batch", str(claims), "--jobs", str(jobs)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, start_new_session=True)
    first = proc.stdout.readline()
    proc.stdout.close()
    workers = child_pids(proc.pid)
    err = _finish(proc)[1].decode()
    assert json.loads(first)["case_id"] == "gen-000000"
    assert proc.returncode == 141 and "Traceback" not in err and "Exception ignored" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "broken pipe" in lines[0] and "were not decided" in lines[0]
    assert not [w for w in workers if alive(w)]
