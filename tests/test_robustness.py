"""Bad input never crashes: fuzzed case files exit 2 with a pointer; batch turns them into
error records; case data is never executed; engine errors are not passed on as answers."""
import json
import subprocess
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import ROOT, reference_case
from ionm_logic.api import explain_case
from ionm_logic.case import parse_case
from ionm_logic.errors import InputError

CLI = [sys.executable, "-m", "ionm_logic"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(10 ** 30), max_value=10 ** 30)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=20,  # keeps each example small; depth is exercised separately
)


def mutate(draw_value, doc, path, value):
    target = doc
    for part in path[:-1]:
        target = target[part]
    if value is _DELETE:
        if isinstance(target, dict):
            target.pop(path[-1], None)
    else:
        target[path[-1]] = value
    return doc


_DELETE = object()
PATHS = [("case_id",), ("payer",), ("date_of_service",), ("procedure",), ("procedure", "kind"),
         ("procedure", "levels"), ("procedure", "codes"), ("clinical",), ("clinical", "conus_level"),
         ("monitoring", "professional", "concurrent_cases"), ("monitoring", "setting"), ("services",),
         ("services", 0), ("services", 0, "units"), ("services", 0, "code"), ("diagnoses", 0), ("history", 0),
         ("patient",), ("schema",), ("extra_field",), ("procedure", "surgeon_remarks")]


def _explain(kb, raw):
    """Validate and explain; only InputError may come out."""
    case = parse_case(raw)
    return explain_case(kb, case)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(path=st.sampled_from(PATHS), value=json_values | st.just(_DELETE))
def test_mutated_case_files_are_decided_or_rejected_with_a_pointer(kb, path, value):
    doc = mutate(None, reference_case(), path, value)
    try:
        _explain(kb, json.dumps(doc).encode())
    except InputError as exc:
        assert exc.problems and all(isinstance(p, str) and (p == "" or p.startswith("/")) for p, _m in exc.problems)
        assert all(m for _p, m in exc.problems)


@settings(max_examples=100, deadline=None)
@given(raw=st.binary(max_size=200) | st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")))
def test_random_bytes_are_rejected_cleanly(kb, raw):
    with pytest.raises(InputError):
        _explain(kb, raw)


@pytest.mark.parametrize("raw", [
    b"", b"   ", b"\xff\xfe\x00", b"[" * 100000, b'{"schema": "ionm-logic/case/v1"' + b', "a": {' * 5000,
    json.dumps(reference_case() | {"services": [{"code": "95938", "units": 10 ** 400}]}).encode(),
    json.dumps(reference_case() | {"case_id": "\udcff".encode("utf-8", "surrogatepass").decode("utf-8", "replace")}).encode(),
    b'{"schema": "ionm-logic/case/v1", "case_id": 1}',
    json.dumps(reference_case()).replace('"L5"', '"L5\\u0000"').encode(),
])
def test_malformed_files_exit_2_without_a_traceback(tmp_path, raw):
    path = tmp_path / "case.json"
    path.write_bytes(raw)
    out = subprocess.run(CLI + ["explain", str(path)], capture_output=True, text=True)
    assert out.returncode in (0, 2), out.stderr
    assert "Traceback" not in out.stderr + out.stdout
    if out.returncode == 2:
        assert out.stderr.startswith("error: ")


def test_dozens_of_malformed_files_each_exit_2(tmp_path):
    bad = []
    for i, path in enumerate(PATHS):
        for value in (None, [], {}, "x", -1, 10 ** 30, "\u202e\u0000"):
            doc = mutate(None, reference_case(), path, value)
            try:
                parse_case(json.dumps(doc))
                explain_case(__import__("ionm_logic.api").api.knowledge_base(), parse_case(json.dumps(doc)))
            except InputError:
                bad.append(doc)
    assert len(bad) >= 36
    folder = tmp_path / "bad"
    folder.mkdir()
    for i, doc in enumerate(bad[:36]):
        (folder / f"{i:03d}.json").write_text(json.dumps(doc))
        out = subprocess.run(CLI + ["explain", str(folder / f"{i:03d}.json")], capture_output=True, text=True)
        assert out.returncode == 2 and "Traceback" not in out.stderr and out.stderr.startswith("error: ")
    batch = subprocess.run(CLI + ["batch", str(folder)], capture_output=True, text=True)
    records = [json.loads(line) for line in batch.stdout.splitlines()]
    assert len(records) == 36 and all(r["schema"] == "ionm-logic/error/v1" for r in records)


def test_code_in_case_fields_is_inert_in_explain_and_batch(tmp_path):
    marker = tmp_path / "pwned"
    payload = f"__import__('os').system('touch {marker}')"
    doc = reference_case()
    doc["case_id"] = payload
    doc["procedure"]["description"] = "\"); " + payload + " #"
    doc["diagnoses"][0]["text"] = payload
    doc["monitoring"]["note"] = payload
    path = tmp_path / "case.json"
    path.write_text(json.dumps(doc))
    out = subprocess.run(CLI + ["explain", str(path), "--format", "json"], capture_output=True, text=True)
    assert out.returncode == 0 and json.loads(out.stdout)["case_id"] == payload
    jsonl = tmp_path / "cases.jsonl"
    jsonl.write_text(json.dumps(doc) + "\n")
    batch = subprocess.run(CLI + ["batch", str(jsonl)], capture_output=True, text=True)
    assert json.loads(batch.stdout)["case_id"] == payload
    assert not marker.exists()


BAD_RULE = """#citation bad-src {title: "t", year: 2020, source: "s", evidence_level: "e"}.
@rule BAD-COMPARE
@cites bad-src
@text 'compares a version string with a number'
case_observation(Case, odd) :- applies_policy(Case, Pack, Version), Version > 3.
"""


def test_an_engine_error_is_reported_not_answered(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "bad.dl").write_text(BAD_RULE)
    case = str(ROOT / "examples" / "alif-plif-l5-s1.json")
    out = subprocess.run(CLI + ["explain", case, "--rules", str(rules), "--format", "json"], capture_output=True, text=True)
    assert out.returncode == 1 and out.stdout == ""
    assert "internal error: TypeError" in out.stderr and "Traceback" not in out.stderr
    jsonl = tmp_path / "cases.jsonl"
    jsonl.write_text(json.dumps(reference_case()) + "\n")
    batch = subprocess.run(CLI + ["batch", str(jsonl), "--rules", str(rules)], capture_output=True, text=True)
    record = json.loads(batch.stdout)
    assert batch.returncode == 1 and record["schema"] == "ionm-logic/error/v1"
    assert record["error"]["message"].startswith("internal error: TypeError")


def test_errors_the_engine_returns_as_values_are_raised():
    """pyDatalog hands some evaluation errors back as values; decoding one raises."""
    from ionm_logic.engine.engine import decode

    with pytest.raises(RuntimeError, match="failed during evaluation"):
        decode(ZeroDivisionError("division by zero"))
