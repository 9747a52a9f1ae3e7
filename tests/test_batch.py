"""Batch: one record per input record, in order, errors as records, same bytes for any --jobs."""
import csv
import io
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from conftest import ROOT, decide, reference_case
from ionm_logic.case import LIMITS

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
        # A batch record is the determination/v1 object plus "source" (issue 12: every record
        # names where it came from); without it, it is what explain decides. The generated
        # file has no blank lines, so the record number is the line number.
        assert record.pop("source") == {"record": index + 1, "file": "claims.jsonl", "line": index + 1}
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
    # Issue 12: folder mode names the file on every record, decisions too.
    assert [r["source"] for r in records] == [{"record": 1, "file": "a.json"}, {"record": 2, "file": "b.json"},
                                              {"record": 3, "file": "c.json"}]
    csv_out = subprocess.run(CLI + ["batch", str(folder), "--format", "csv"], capture_output=True, text=True)
    rows = list(csv.DictReader(io.StringIO(csv_out.stdout)))
    # The reference case bills 6 lines: 6 rows per decided case, one row for the error record.
    assert len(rows) == 6 + 6 + 1
    assert [r["file"] for r in rows] == ["a.json"] * 6 + ["b.json"] * 6 + ["c.json"]
    assert rows[-1]["determination"] == "error" and rows[-1]["record"] == "3"


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


FIXTURES = ROOT / "tests" / "fixtures"
HOSTILE = FIXTURES / "hostile"


def _jsonl(path, docs, blank_lines=False):
    text = "".join(json.dumps(d) + "\n" + ("\n" if blank_lines else "") for d in docs)
    path.write_text(text)
    return path


def _run(args, **kwargs):
    return subprocess.run(CLI + ["batch"] + args, capture_output=True, **kwargs)


@pytest.mark.parametrize("how", ["same path", "symbolic link", "hard link", "another spelling"])
def test_an_output_that_is_the_input_is_refused_and_the_input_kept(tmp_path, how):
    """Issue 12: `batch same.jsonl -o same.jsonl` truncated the input to 0 bytes and exited 0."""
    source = _jsonl(tmp_path / "same.jsonl", [reference_case()])
    before = source.read_bytes()
    target = {"same path": source, "another spelling": tmp_path / "." / "same.jsonl"}.get(how)
    if how == "symbolic link":
        target = tmp_path / "link.jsonl"
        target.symlink_to(source)
    elif how == "hard link":
        target = tmp_path / "hard.jsonl"
        os.link(source, target)
    out = _run([str(source), "-o", str(target)], text=True)
    assert out.returncode == 2 and "'-o' / '--output'" in out.stderr and "is the input" in out.stderr
    assert "Traceback" not in out.stderr
    assert source.read_bytes() == before


def test_standard_output_appended_to_the_input_is_refused(tmp_path):
    source = _jsonl(tmp_path / "same.jsonl", [reference_case()])
    before = source.read_bytes()
    with open(source, "ab") as append:
        out = subprocess.run(CLI + ["batch", str(source)], stdout=append, stderr=subprocess.PIPE, text=True)
    assert out.returncode == 2 and "standard output is the input" in out.stderr
    assert source.read_bytes() == before


def test_standard_input_as_the_output_is_refused(tmp_path):
    source = _jsonl(tmp_path / "same.jsonl", [reference_case()])
    before = source.read_bytes()
    with open(source, "rb") as stdin:
        out = subprocess.run(CLI + ["batch", "-", "-o", str(source)], stdin=stdin, capture_output=True, text=True)
    assert out.returncode == 2 and "is the input" in out.stderr
    assert source.read_bytes() == before


def test_a_folder_member_as_output_is_refused(tmp_path):
    folder = tmp_path / "cases"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps(reference_case()))
    before = (folder / "a.json").read_bytes()
    out = _run([str(folder), "-o", str(folder / "a.json")], text=True)
    assert out.returncode == 2 and "is the input" in out.stderr
    assert (folder / "a.json").read_bytes() == before


@pytest.mark.parametrize("target", ["/nonexistent/x", "DIRECTORY", "/dev/full"])
def test_an_unwritable_output_is_bad_usage_naming_the_option(tmp_path, target):
    """Issue 12: these were internal errors, exit 1; they are bad usage: exit 2, naming -o."""
    source = _jsonl(tmp_path / "cases.jsonl", [reference_case()])
    target = str(tmp_path) if target == "DIRECTORY" else target
    out = _run([str(source), "-o", target], text=True)
    assert out.returncode == 2, out.stderr
    assert "-o" in out.stderr and "--output" in out.stderr and "Traceback" not in out.stderr
    problem = {"/nonexistent/x": "No such file or directory", "/dev/full": "No space left on device"}.get(
        target, "Is a directory")
    assert problem in out.stderr


def test_dash_reads_the_cases_from_standard_input(tmp_path):
    source = _jsonl(tmp_path / "cases.jsonl", [reference_case(), reference_case() | {"case_id": "second"}])
    out = subprocess.run(CLI + ["batch", "-"], input=source.read_bytes(), capture_output=True)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [r["case_id"] for r in records] == ["alif-plif-l5-s1", "second"]
    assert records[1]["source"] == {"record": 2, "file": "<stdin>", "line": 2}


def test_csv_has_units_date_of_service_file_and_the_record_number(tmp_path):
    """Issue 12: CSV lacked units, date of service and source file, and its "record" was the
    physical line. With a blank line after each case, case 2 is on line 3 but is record 2."""
    second = reference_case() | {"case_id": "second", "date_of_service": "2024-03-04"}
    source = _jsonl(tmp_path / "claims.jsonl", [reference_case(), second], blank_lines=True)
    out = _run([str(source), "--format", "csv"], text=True)
    rows = list(csv.DictReader(io.StringIO(out.stdout)))
    assert {"units", "date_of_service", "file", "line", "record"} <= set(rows[0])
    seconds = [r for r in rows if r["case_id"] == "second"]
    assert {(r["record"], r["line"], r["file"], r["date_of_service"]) for r in seconds} == {
        ("2", "3", "claims.jsonl", "2024-03-04")}
    # The reference case bills 95941 with 4 units (examples/alif-plif-l5-s1.json).
    units = {r["code"]: r["units"] for r in seconds}
    assert units["95941"] == str(next(s["units"] for s in reference_case()["services"] if s["code"] == "95941"))


def test_a_folder_reads_upper_case_json_files_and_reports_what_it_skips():
    """Issue 16: folder batch skipped UPPER.JSON in silence."""
    out = _run([str(FIXTURES / "folder-mixed-case")], text=True)
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert [(r["case_id"], r["source"]["file"]) for r in records] == [("upper", "B.JSON"), ("lower", "a.json")]
    assert "skipped 1 file(s) that are not *.json: notes.txt" in out.stderr


def test_detail_short_leaves_every_proof_out_and_decides_the_same(tmp_path):
    source = _jsonl(tmp_path / "cases.jsonl", [reference_case()])
    full = json.loads(_run([str(source)]).stdout)
    short_out = _run([str(source), "--detail", "short"])
    short = json.loads(short_out.stdout)
    assert b'"proof"' not in short_out.stdout and b'"proof"' in json.dumps(full).encode()
    assert len(short_out.stdout) * 3 < len(json.dumps(full))
    assert [l["determination"] for l in short["lines"]] == [l["determination"] for l in full["lines"]]
    assert [[f["rule"] for f in l["findings"]] for l in short["lines"]] == \
        [[f["rule"] for f in l["findings"]] for l in full["lines"]]
    help_text = subprocess.run(CLI + ["batch", "--help"], capture_output=True, text=True).stdout
    assert "--detail" in help_text and "proof" in help_text


def test_cells_a_spreadsheet_would_run_are_neutralised_in_decisions_and_errors():
    """Issue 16: case_id and code were written verbatim; `=cmd|...` became a live formula.
    Every cell starting with = + - @ tab or CR gets a leading apostrophe (OWASP)."""
    out = _run([str(HOSTILE / "csv-formula-injection.jsonl"), "--format", "csv"])
    rows = list(csv.reader(io.StringIO(out.stdout.decode("utf-8"), newline="")))
    cells = [cell for row in rows[1:] for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")]
    ids = {row[3] for row in rows[1:]}
    assert "'=cmd|' /C calc'!A0" in ids and "'@SUM(A1:A2)" in ids and "'\t=1" in ids and "'=2+2" in ids
    assert "'=1+1" in {row[8] for row in rows[1:]}
    assert rows[-1][11] == "error"


@pytest.mark.parametrize("fixture", ["lone-surrogate-case-id.jsonl", "lone-surrogate-raw-bytes.jsonl"])
@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_a_lone_surrogate_case_id_is_one_error_record_and_the_run_goes_on(fixture, fmt, jobs):
    """Issue 16: batch exited 1 with a UnicodeEncodeError after one record; later cases lost."""
    out = _run([str(HOSTILE / fixture), "--format", fmt, "--jobs", jobs])
    assert out.returncode == 0, out.stderr
    text = out.stdout.decode("utf-8")  # the output is UTF-8 text throughout
    if fmt == "jsonl":
        records = [json.loads(line) for line in text.splitlines()]
        assert records[0]["schema"] == "ionm-logic/error/v1" and records[0]["case_id"] is None
        assert records[1]["case_id"].startswith("after-the-")
    else:
        rows = list(csv.DictReader(io.StringIO(text)))
        assert rows[0]["determination"] == "error" and rows[0]["record"] == "1"
        assert {r["record"] for r in rows[1:]} == {"2"} and rows[1]["case_id"].startswith("after-the-")
    assert "1 error(s)" in out.stderr.decode()


def test_an_unknown_payer_option_is_refused_before_any_case(tmp_path):
    """Issue 16: `--payer typo` exited 0 with every record an error."""
    source = _jsonl(tmp_path / "cases.jsonl", [reference_case()])
    out = _run([str(source), "--payer", "typo"], text=True)
    assert out.returncode == 2 and out.stdout == ""
    assert "--payer 'typo' is not a policy pack" in out.stderr and "commercial-reference" in out.stderr


def test_the_summary_table_does_not_pad_to_the_longest_code(tmp_path):
    """Issue 16: one long code (as long as the limit allows) widened every row of the summary."""
    long_code = "9" * LIMITS["code_chars"]
    doc = reference_case() | {"services": [{"code": long_code}, {"code": "95938"}]}
    out = _run([str(_jsonl(tmp_path / "cases.jsonl", [doc]))], text=True)
    assert out.returncode == 0
    table = out.stderr.splitlines()[:-1]
    assert max(len(line) for line in table) < 200
    assert long_code not in out.stderr and "9999" in out.stderr


def test_the_progress_bar_never_mixes_into_records_on_a_terminal(tmp_path):
    """Issue 12: on a terminal the bar (standard error) mixed into the records (standard output)."""
    import pty

    source = _jsonl(tmp_path / "cases.jsonl", [reference_case() | {"case_id": f"c{i}"} for i in range(40)])

    def on_a_terminal(args):
        leader, follower = pty.openpty()
        proc = subprocess.Popen(CLI + ["batch", str(source)] + args, stdout=follower, stderr=follower,
                                stdin=subprocess.DEVNULL)
        os.close(follower)
        chunks = []
        while True:
            try:
                data = os.read(leader, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        proc.wait(timeout=120)
        os.close(leader)
        return b"".join(chunks).decode("utf-8", "replace")

    screen = on_a_terminal([])
    assert "deciding" not in screen
    records = [line for line in screen.splitlines() if line.startswith("{")]
    assert len(records) == 40 and all(json.loads(line) for line in records)
    # Records to a file: the terminal shows the bar.
    assert "deciding" in on_a_terminal(["-o", str(tmp_path / "out.jsonl")])


def test_the_readme_and_the_help_give_every_batch_exit_status():
    """Issue 12: one meaning per exit status, and the README tells the truth about each."""
    readme = (ROOT / "README.md").read_text()
    table = readme.split("| status | `batch` means |", 1)[1].split("\n\n", 1)[0]
    statuses = set(re.findall(r"^\| ([\d, ]+) \|", table, re.M))
    assert {s.strip() for group in statuses for s in group.split(",")} == {"0", "1", "2", "130", "143", "141"}
    help_text = subprocess.run(CLI + ["batch", "--help"], capture_output=True, text=True).stdout
    for status in ("0", "1", "2", "130", "141", "143"):
        assert re.search(rf"\b{status}\b", help_text), status


def test_a_named_pipe_is_read_once_and_whole(tmp_path):
    """A FIFO can be opened and read only once: checking it is readable must not consume it."""
    import threading

    fifo = tmp_path / "cases.fifo"
    os.mkfifo(fifo)
    docs = [reference_case() | {"case_id": f"c{i}"} for i in range(3)]

    def feed():
        with open(fifo, "w") as fh:
            fh.write("".join(json.dumps(d) + "\n" for d in docs))

    writer = threading.Thread(target=feed)
    writer.start()
    out = _run([str(fifo)], timeout=120)
    writer.join(timeout=10)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["case_id"] for line in out.stdout.splitlines()] == ["c0", "c1", "c2"]
