"""Input limits: no one field can make a case cost more than its size. Each limit is an input
error naming the field (exit 2, or an error record in batch); the README states every limit;
null lists read as empty; error messages quote bad values shortened."""
import json
import os
import re
import subprocess
import sys

import pytest

from conftest import ROOT, decide, reference_case
from ionm_logic.case import LIMITS, parse_case
from ionm_logic.errors import InputError

CLI = [sys.executable, "-m", "ionm_logic"]
HOSTILE = ROOT / "tests" / "fixtures" / "hostile"


def _explain(path, *args):
    return subprocess.run(CLI + ["explain", str(path)] + list(args), capture_output=True, text=True, timeout=120)


def test_a_60000_character_diagnosis_code_is_an_input_error_not_a_memory_error():
    """Issue 15: the code-prefix facts grew with the square of its length: MemoryError."""
    out = _explain(HOSTILE / "long-diagnosis-code.json")
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert f"/diagnoses/0/code: string should have at most {LIMITS['code_chars']} characters" in out.stderr
    assert len(out.stderr) < 500


def _over(path: str, value):
    doc = reference_case()
    target = doc
    parts = path.split(".")
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    target[parts[-1]] = value
    return doc


LIMIT_CASES = [
    ("services", [{"code": "95938"}] * (LIMITS["services"] + 1), "/services"),
    ("procedure.levels", ["L5"] * (LIMITS["list_items"] + 1), "/procedure/levels"),
    ("diagnoses", [{"code": "M51.36"}] * (LIMITS["list_items"] + 1), "/diagnoses"),
    ("procedure.description", "x" * (LIMITS["text_chars"] + 1), "/procedure/description"),
    ("case_id", "c" * (LIMITS["name_chars"] + 1), "/case_id"),
    ("services.0.code", "9" * (LIMITS["code_chars"] + 1), "/services/0/code"),
    ("procedure.kind", "k" * (LIMITS["name_chars"] + 1), "/procedure/kind"),
]


@pytest.mark.parametrize("path,value,pointer", LIMIT_CASES, ids=[c[0] for c in LIMIT_CASES])
def test_each_limit_is_an_input_error_naming_the_field(path, value, pointer):
    with pytest.raises(InputError) as caught:
        parse_case(json.dumps(_over(path, value)))
    assert [p for p, _m in caught.value.problems] == [pointer]


def test_values_at_the_limits_are_accepted(kb):
    doc = _over("services", [{"code": "95938"}] * LIMITS["services"])
    doc["procedure"]["description"] = "x" * LIMITS["text_chars"]
    doc["case_id"] = "c" * LIMITS["name_chars"]
    assert len(decide(kb, doc)["lines"]) == LIMITS["services"]


def test_nesting_past_the_depth_limit_is_an_input_error():
    deep = {"a": None}
    for _ in range(LIMITS["depth"]):
        deep = {"a": deep}
    with pytest.raises(InputError) as caught:
        parse_case(json.dumps(reference_case() | {"procedure": deep}))
    assert caught.value.problems[0][1] == f"nested more than {LIMITS['depth']} levels deep"


def test_a_case_of_100000_service_lines_is_refused_at_once(tmp_path):
    """Issue 15: it ran past 10 minutes."""
    path = tmp_path / "huge.json"
    path.write_text(json.dumps(reference_case() | {"services": [{"code": "95938", "units": 1}] * 100_000}))
    out = _explain(path)
    # 100,000 lines of 29 bytes are over the byte limit too: either limit may speak first.
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "longer than the limit" in out.stderr or "/services" in out.stderr


def test_an_oversized_record_is_an_error_record_read_in_bounded_memory(tmp_path):
    """Issue 15: a 1 GB JSON-lines record took 4 GB of memory. A 200 MB line is skipped in
    pieces: peak memory stays well under the line's size, and the next record is decided."""
    path = tmp_path / "big.jsonl"
    with open(path, "wb") as fh:
        fh.write(b'{"schema": "ionm-logic/case/v1", "case_id": "huge", "procedure": {"description": "')
        block = b"x" * (1 << 20)
        for _ in range(200):
            fh.write(block)
        fh.write(b'"}}\n')
        fh.write(json.dumps(reference_case()).encode() + b"\n")
    # The peak is the process's own VmHWM, read as it exits: a child's rusage would count the
    # memory of the test process it was forked from.
    peak = tmp_path / "peak"
    measure = ("import atexit, runpy, sys\n"
               "def peak():\n"
               "    line = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
               f"    open({str(peak)!r}, 'w').write(line.split()[1])\n"
               "atexit.register(peak)\n"
               f"sys.argv = ['ionm-logic', 'batch', {str(path)!r}]\n"
               "runpy.run_module('ionm_logic', run_name='__main__')\n")
    out = subprocess.run([sys.executable, "-c", measure], capture_output=True, timeout=300)
    assert out.returncode == 0, out.stderr
    records = [json.loads(line) for line in out.stdout.splitlines()]
    assert records[0]["schema"] == "ionm-logic/error/v1" and records[0]["source"]["line"] == 1
    assert records[0]["error"]["message"] == f"the record is longer than the limit of {LIMITS['record_bytes']:,} bytes"
    assert records[1]["case_id"] == "alif-plif-l5-s1" and records[1]["source"]["line"] == 2
    assert int(peak.read_text()) * 1024 < 150 * (1 << 20)  # VmHWM is in kB


def test_an_oversized_case_file_is_refused_without_reading_it_whole(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b" " * (LIMITS["record_bytes"] + 1) + b"{}")
    out = _explain(path)
    assert out.returncode == 2
    assert f"longer than the limit of {LIMITS['record_bytes']:,} bytes" in out.stderr


def test_error_messages_quote_a_huge_bad_value_shortened(tmp_path):
    """Issue 16: error messages echoed a 10 MB bad value in full. A case file is at most
    1,000,000 bytes; the values below are as long as it allows, and the messages stay short."""
    for doc in (reference_case() | {"schema": "s" * 900_000}, reference_case() | {"q" * 900_000: 1},
                _over("procedure.kind", "k" * LIMITS["name_chars"])):
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(doc))
        out = _explain(path)
        assert out.returncode == 2 and len(out.stderr) < 1500, out.stderr[:300]
        assert "characters]" in out.stderr  # the elision says how long the value was
    out = subprocess.run(CLI + ["explain", str(ROOT / "examples" / "alif-plif-l5-s1.json"), "--payer", "p" * 100_000],
                         capture_output=True, text=True)
    assert out.returncode == 2 and len(out.stderr) < 1500 and "[100,000 characters]" in out.stderr


def test_null_lists_read_as_empty_lists(kb):
    """Issue 12: `"codes": null`, as every Parquet or SQL export writes, was rejected. Null
    means not documented everywhere else: a null list decides as an absent or empty one."""
    with_nulls = json.loads((HOSTILE / "null-lists.json").read_text())
    without = json.loads(json.dumps(with_nulls))
    without["procedure"]["codes"] = []
    without["procedure"]["instrumentation"] = []
    without["diagnoses"] = []
    without["history"] = []
    without["monitoring"]["report"]["interventions"] = []
    assert decide(kb, with_nulls) == decide(kb, without)
    out = _explain(HOSTILE / "null-lists.json", "--format", "json")
    assert out.returncode == 0, out.stderr
    with pytest.raises(InputError) as caught:
        parse_case(json.dumps(reference_case() | {"services": None}))
    assert caught.value.problems[0][0] == "/services"  # services must still hold one line


def test_the_schema_allows_null_lists():
    import jsonschema

    from ionm_logic.api import knowledge_base
    from ionm_logic.case import json_schema

    jsonschema.validate(json.loads((HOSTILE / "null-lists.json").read_text()), json_schema(knowledge_base()))


def test_the_readme_states_every_input_limit():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Input limits", 1)[1].split("\n## ", 1)[0]
    for name, value in LIMITS.items():
        assert re.search(rf"`{name}`[^\n]*\b{value:,}\b", section), name
