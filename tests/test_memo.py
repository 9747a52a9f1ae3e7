"""The batch decision memo is exact: a hit gives the bytes a fresh decision gives, in every output
format and for every input kind, and any change to a case fact, a pointer, the date of service,
an option or the rules misses.

Each run is batch.run in this process (the time limit off, so one job decides here and its memo
can be read afterwards); "fresh" is the same run with the memo off."""
import copy
import json
import re
import tempfile

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import ROOT, case_with, reference_case

from ionm_logic import batch
from ionm_logic.api import decide, knowledge_base, pose, pose_input
from ionm_logic.case import parse_case
from ionm_logic.inputs import parse_input
from ionm_logic.memo import DecisionMemo, Template, decision_key, key_size

BUNDLE = ROOT / "examples" / "fhir" / "alif-plif-l5-s1.claim.json"
MEMO = 32 * 1024 * 1024


@pytest.fixture(autouse=True)
def in_process(monkeypatch):
    monkeypatch.setenv("IONM_LOGIC_TIME_LIMIT", "off")


def records_of(docs, folder=False):
    """Records as a JSON-lines file's lines, or (folder) as a folder's case files."""
    raws = [json.dumps(doc, ensure_ascii=False).encode() for doc in docs]
    if folder:
        return [batch.Record(n, None, f"case-{n}.json", raw) for n, raw in enumerate(raws, 1)]
    return [batch.Record(n, n, "cases.jsonl", raw) for n, raw in enumerate(raws, 1)]


def run(records, memo_bytes=MEMO, **options):
    """(output text, the memo) of a one-process batch over records."""
    with tempfile.TemporaryFile() as out:
        batch.run(iter(records), batch.Sink(out.fileno(), "output"), batch.Options(memo_bytes=memo_bytes, **options))
        out.seek(0)
        return out.read().decode("utf-8"), batch._WORKER["memo"]


def renamed(doc, case_id):
    return dict(doc, case_id=case_id)


def key_of(kb, doc, options=("jsonl", "full", None, None), **pose_options):
    return decision_key(kb, pose(parse_case(json.dumps(doc)), kb, **pose_options), options)


# Case ids that each format must encode its own way: JSON escapes, a CSV cell with a comma and
# a quote, a cell a spreadsheet would read as a formula (written with a leading apostrophe).
IDS = ["first", 'quote " and \\ backslash, comma', "ünïcode ✓ \u2028", "=HYPERLINK(\"x\")", ""]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
@pytest.mark.parametrize("detail", ["full", "short"])
@pytest.mark.parametrize("folder", [False, True])
def test_a_hit_gives_the_bytes_a_fresh_decision_gives(fmt, detail, folder):
    # The same case five times under ids each format encodes differently: four hits, and the
    # output equals the one a batch without the memo writes, byte for byte.
    base = reference_case()
    records = records_of([renamed(base, i) for i in IDS], folder)
    remembered, memo = run(records, fmt=fmt, detail=detail)
    fresh, no_memo = run(records, memo_bytes=0, fmt=fmt, detail=detail)
    assert no_memo is None
    assert (memo.hits, memo.misses, len(memo)) == (4, 1, 1)
    assert remembered == fresh


def test_a_bundle_hit_gives_the_bytes_a_fresh_decision_gives_and_a_case_file_with_its_facts_misses(kb):
    # Two Bundles alike but for their case id: the second is a hit. The case file the Bundle
    # stands for asserts the same facts from other pointers (/procedure/levels/0, not
    # /entry/N/resource/...), which its proofs cite: it must miss.
    bundle = json.loads(BUNDLE.read_text())
    other = copy.deepcopy(bundle)
    other["identifier"]["value"] = "another claim"
    case_file = json.loads((ROOT / "examples" / "alif-plif-l5-s1.json").read_text())
    records = records_of([bundle, other, case_file])
    remembered, memo = run(records)
    assert (memo.hits, memo.misses) == (1, 2)
    assert remembered == run(records, memo_bytes=0)[0]
    first, second, third = (json.loads(line) for line in remembered.splitlines())
    assert second["case_id"] == "another claim"
    assert first["lines"] == second["lines"] and first["lines"] != third["lines"]


def test_table_rows_skip_the_memo_and_give_the_same_bytes():
    # A table record's pointers name its own row, so it could never hit: it is not looked up.
    from ionm_logic.tables import read_records, source_for

    source = source_for(str(ROOT / "examples" / "tables" / "claims.parquet"), None, None, None)
    remembered, memo = run(list(read_records(source)))
    assert len(memo) == 0 and memo.hits == memo.misses == 0
    assert remembered == run(list(read_records(source)), memo_bytes=0)[0]


def test_a_changed_fact_value_misses(kb):
    # One more unit on a line is one changed billed_units fact: another key, and in a batch
    # the second case is decided afresh (its units show in its own record).
    base = reference_case()
    more = copy.deepcopy(base)
    more["services"][0]["units"] = base["services"][0].get("units", 1) + 1
    assert key_of(kb, base) != key_of(kb, more)
    remembered, memo = run(records_of([base, more]))
    assert memo.hits == 0
    assert remembered == run(records_of([base, more]), memo_bytes=0)[0]


def test_a_changed_pointer_alone_misses(kb):
    # Levels listed L5, S1 and S1, L5 give the same operated_level facts from swapped fields:
    # the proofs point at /procedure/levels/0 for L5 or for S1, so the records differ and the
    # memo must not answer one with the other.
    listed = case_with(**{"procedure.levels": ["L5", "S1"]})
    swapped = case_with(**{"procedure.levels": ["S1", "L5"]})
    facts = lambda doc: {(f.pred, f.values) for f in pose(parse_case(json.dumps(doc)), kb).facts}  # noqa: E731
    assert facts(listed) == facts(swapped)
    assert key_of(kb, listed) != key_of(kb, swapped)
    remembered, memo = run(records_of([listed, swapped]))
    assert memo.hits == 0
    first, second = remembered.split("\n")[:2]
    assert first != second
    assert remembered == run(records_of([listed, swapped]), memo_bytes=0)[0]


def test_another_date_of_service_under_the_same_policy_version_misses(kb):
    # The date is no case fact, but a CSV row shows it: two dates in force under one version
    # have two keys, and each row carries its own date.
    base = reference_case()
    later = dict(base, date_of_service="2024-06-02")
    assert pose(parse_case(json.dumps(base)), kb).policy.version == pose(parse_case(json.dumps(later)), kb).policy.version
    assert key_of(kb, base) != key_of(kb, later)
    remembered, memo = run(records_of([base, later]), fmt="csv")
    assert memo.hits == 0
    assert remembered == run(records_of([base, later]), memo_bytes=0, fmt="csv")[0]


def test_a_changed_option_or_rule_set_misses(kb, tmp_path):
    doc = reference_case()
    plain = key_of(kb, doc)
    assert key_of(kb, doc, options=("csv", "full", None, None)) != plain
    assert key_of(kb, doc, options=("jsonl", "short", None, None)) != plain
    assert key_of(kb, doc, options=("jsonl", "full", "commercial-reference", None)) != plain
    assert key_of(kb, doc, options=("jsonl", "full", None, "2024-01-01")) != plain
    assert key_of(kb, doc, payer="cms-lcd-l34623") != plain  # another pack and version
    (tmp_path / "extra.dl").write_text("% ===\n% extra.dl — one more fact.\n% ===\n\n"
                                       "#pred extra_marker(Name) :: '@(Name) is an extra marker'.\n\n"
                                       "extra_marker(\"x\").\n")
    other = knowledge_base([tmp_path])
    assert other.sha256 != kb.sha256
    assert key_of(other, doc) != plain


# Case text that looks like a record's per-record values, as each format writes them.
LOOKALIKES = ['gen-1', '"source":{"record":1,"file":"cases.jsonl","line":1}}', '1,cases.jsonl,1,gen-1,',
              '"case_id":"gen-1"', "\0ionm-logic case_id\0", "a\r\nb"]


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_case_data_that_looks_like_a_per_record_value_is_remembered_and_a_hit_stays_exact(fmt):
    # A billed code the rules do not know is echoed in its line: codes that read like a case
    # id, a source or a CSV row's first cells are case data the memo keeps as it is.
    docs = [case_with(case_id="gen-1", **{"services": [{"code": code} for code in LOOKALIKES]})]
    docs.append(renamed(docs[0], "gen-2"))
    remembered, memo = run(records_of(docs), fmt=fmt)
    assert (memo.hits, len(memo)) == (1, 1)
    assert remembered == run(records_of(docs), memo_bytes=0, fmt=fmt)[0]
    if fmt == "jsonl":  # the codes are written as they were given
        assert [line["code"] for line in json.loads(remembered.splitlines()[1])["lines"]] == LOOKALIKES


def test_error_records_are_not_remembered():
    bad = case_with(**{"procedure.levels": ["L7"]})
    records = records_of([bad, bad])
    remembered, memo = run(records)
    assert len(memo) == 0
    assert remembered == run(records, memo_bytes=0)[0]
    assert all(json.loads(line)["schema"] == "ionm-logic/error/v1" for line in remembered.splitlines())


def test_a_template_fills_each_slot_between_its_parts():
    text = b"xBy"
    template = Template((b"A", memoryview(text)[1:2], b"C", b""), (0, 1, 0), ())
    assert template.fill((b"1", b"two")) == b"A1BtwoC1"
    assert template.size() == 3 + 4 * 64


@pytest.fixture(scope="module")
def decided():
    """(case, document) of the reference case decided as a batch worker decides it."""
    kb = knowledge_base()
    inp = parse_input(json.dumps(reference_case()).encode(), kb)
    return inp.case, decide(kb, pose_input(kb, inp), proofs=True).document


RECORDS = st.builds(lambda n, file, line, case_id: (batch.Record(n, line, file, b""), case_id),
                    st.integers(1, 10 ** 9), st.text(), st.none() | st.integers(1, 10 ** 9), st.text())


@settings(max_examples=200, deadline=None)
@given(fmt=st.sampled_from(["jsonl", "csv"]), first=RECORDS, second=RECORDS)
def test_a_template_filled_for_another_record_is_that_records_fresh_rendering(decided, fmt, first, second):
    # The template a miss keeps, cut from the first record's rendering, filled with the second
    # record's values: the bytes the second record renders to afresh, for any ids, files and
    # lines (JSON escapes, CSV quoting, formula cells), and the miss gives its own rendering.
    case, document = decided
    (record, case_id), (other, other_id) = first, second
    result = dict(document, case_id=case_id)
    text, template = batch._remembered(record, case, result, fmt, batch._slot_values(record, case_id, fmt), ())
    assert text == batch._render_result(record, case, result, fmt)
    assert template.fill(batch._slot_values(other, other_id, fmt)) == \
        batch._render_result(other, case, dict(document, case_id=other_id), fmt)


def test_a_document_whose_per_record_values_are_not_in_place_is_not_remembered(decided):
    # Found by place, not by search: a document that does not begin with its schema and case
    # id, or already holds a source, has no template (and its record is rendered as usual).
    case, document = decided
    record = batch.Record(1, 1, "cases.jsonl", b"")
    for result in ({k: document[k] for k in reversed(document)}, dict(document, source="case data")):
        values = batch._slot_values(record, result["case_id"], "jsonl")
        assert batch._remembered(record, case, result, "jsonl", values, ()) == \
            (batch._render_result(record, case, result, "jsonl"), None)


def test_a_key_tells_values_apart_by_type_and_not_by_which_objects_are_shared(kb):
    # 1 == 1.0 == True in Python, and a date is no string: a decision on one is not a decision
    # on another. Equal facts built from shared or from separate objects have one key.
    import datetime
    from types import SimpleNamespace
    from ionm_logic.case import CaseFact

    posed = pose(parse_case(json.dumps(reference_case())), kb)

    def key(*facts):
        return decision_key(kb, SimpleNamespace(policy=posed.policy, case=posed.case, facts=list(facts)), ())

    values = (1, 1.0, True, "1", "True", 1j, datetime.date(2024, 1, 2), "2024-01-02")
    odd = CaseFact("r", ("case", datetime.date(2000, 1, 1)), "/z")  # a value marshal cannot write
    for other in ((), (odd,)):
        assert len({key(CaseFact("p", ("case", value), "/x"), *other) for value in values}) == len(values)
    shared = "".join(["L", "5"])
    apart = [CaseFact("p", ("case", "".join(["L", "5"])), "/x"), CaseFact("q", ("case", "".join(["L", "5"])), "/y")]
    assert key(CaseFact("p", ("case", shared), "/x"), CaseFact("q", ("case", shared), "/y")) == key(*apart)


def test_memory_stays_within_its_bound():
    template = Template((b"x" * 1000, b"y" * 1000), (0,), ())
    keys = [f"key {n:04d}" for n in range(21)]  # decision_key gives strings
    memo = DecisionMemo(max_bytes=5 * (template.size() + key_size(keys[0])))
    for n in range(20):
        memo.put(keys[n], template)
        assert memo.bytes <= memo.max_bytes
    assert len(memo) == 5
    assert memo.get(keys[0]) is None and memo.get(keys[19]) is template  # least recently used went first
    memo.put(keys[20], template)
    assert memo.get(keys[15]) is None and memo.get(keys[19]) is template


@pytest.mark.parametrize("fmt", ["jsonl", "csv"])
def test_the_command_writes_the_same_bytes_with_the_memo_on_or_off_for_any_jobs(tmp_path, fmt):
    # Half of the generated cases repeat an earlier one under a new case id: the memo answers
    # many of them, in each worker; every output is the memo-off --jobs 1 output.
    import os
    import subprocess
    import sys

    claims = tmp_path / "claims.jsonl"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "generate_cases.py"), "200", str(claims),
                    "--repeat", "0.5", "--bad", "2"], check=True)
    outs = {}
    for jobs, memo in ((1, "0"), (1, "32"), (2, "32")):
        out = tmp_path / f"out-{jobs}-{memo}.{fmt}"
        proc = subprocess.run([sys.executable, "-m", "ionm_logic", "batch", str(claims), "-o", str(out), "--jobs",
                               str(jobs), "--format", fmt, "--memo-mb", memo], capture_output=True, text=True,
                              env=dict(os.environ, IONM_LOGIC_TIME_LIMIT="60"))
        assert proc.returncode == 0, proc.stderr
        outs[jobs, memo] = out.read_bytes()
    assert outs[1, "0"] == outs[1, "32"] == outs[2, "32"]
