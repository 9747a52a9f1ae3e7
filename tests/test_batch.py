"""Batch: one record per input record, in order, errors as records, same bytes for any --jobs."""
import json
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, decide, reference_case

GENERATE = ROOT / "benchmarks" / "generate_cases.py"
CLI = [sys.executable, "-m", "ionm_logic"]


@pytest.fixture(scope="module")
def claims(tmp_path_factory):
    """2,000 generated valid cases with 3 invalid lines spread among them."""
    path = tmp_path_factory.mktemp("claims") / "claims.jsonl"
    subprocess.run([sys.executable, str(GENERATE), "2000", str(path), "--bad", "3"], check=True)
    return path


@pytest.fixture(scope="module")
def decided(claims, tmp_path_factory):
    out = {}
    for jobs in (1, 2):
        target = tmp_path_factory.mktemp(f"out{jobs}") / "out.jsonl"
        run = subprocess.run(CLI + ["batch", str(claims), "-o", str(target), "--jobs", str(jobs)],
                             capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        out[jobs] = (target.read_bytes(), run.stderr)
    return out


def test_every_input_record_gives_one_output_record_in_order(claims, decided):
    records = [json.loads(line) for line in decided[1][0].splitlines()]
    inputs = claims.read_text().splitlines()
    assert len(records) == len(inputs) == 2003
    errors = [r for r in records if r["schema"] == "ionm-logic/error/v1"]
    assert len(errors) == 3
    for number, (line, record) in enumerate(zip(inputs, records), 1):
        if record["schema"] == "ionm-logic/error/v1":
            assert record["line"] == number and set(record["error"]) == {"pointer", "message"}
        else:
            assert record["case_id"] == json.loads(line)["case_id"]


def test_output_bytes_are_the_same_for_any_number_of_jobs(decided):
    assert decided[1][0] == decided[2][0]


def test_batch_decides_as_explain_decides(kb, claims, decided):
    inputs = claims.read_text().splitlines()
    records = decided[1][0].splitlines()
    for index in range(0, len(inputs), 97):
        record = json.loads(records[index])
        if record["schema"] == "ionm-logic/error/v1":
            continue
        assert record == decide(kb, json.loads(inputs[index]))


def test_summary_goes_to_standard_error(decided):
    stderr = decided[1][1]
    assert "2003 record(s), 2000 decided, 3 error(s)" in stderr
    assert "payer" in stderr and "code" in stderr


def test_folder_input_and_csv_format(tmp_path):
    folder = tmp_path / "cases"
    folder.mkdir()
    for name in ("b.json", "a.json"):
        (folder / name).write_text(json.dumps(reference_case() | {"case_id": name}))
    (folder / "c.json").write_text("{broken")
    out = subprocess.run(CLI + ["batch", str(folder)], capture_output=True, text=True)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r.get("case_id") for r in records] == ["a.json", "b.json", None]
    assert records[2]["schema"] == "ionm-logic/error/v1" and records[2]["file"] == "c.json"
    csv_out = subprocess.run(CLI + ["batch", str(folder), "--format", "csv"], capture_output=True, text=True)
    rows = csv_out.stdout.splitlines()
    assert rows[0].startswith("record,case_id,payer") and len(rows) == 1 + 6 + 6 + 1
    assert rows[-1].split(",")[7] == "error"


def test_examples_folder_decides_without_a_progress_bar_when_piped():
    out = subprocess.run(CLI + ["batch", str(ROOT / "examples")], capture_output=True, text=True)
    assert out.returncode == 0 and "deciding" not in out.stderr
    assert len(out.stdout.splitlines()) == len(list((ROOT / "examples").glob("*.json")))


def test_interrupting_a_batch_leaves_complete_records(claims, tmp_path):
    target = tmp_path / "partial.jsonl"
    proc = subprocess.Popen(CLI + ["batch", str(claims), "-o", str(target)], stderr=subprocess.PIPE)
    deadline = time.time() + 60
    while time.time() < deadline and (not target.exists() or target.stat().st_size == 0):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    lines = target.read_text().splitlines()
    assert 0 < len(lines) < 2003
    for line in lines:
        json.loads(line)
