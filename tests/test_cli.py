"""The command line: exit statuses, messages naming the field, formats, and the other commands."""
import json
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT, reference_case
from ionm_logic.cli import main

REFERENCE = str(ROOT / "examples" / "alif-plif-l5-s1.json")


def run(*args, input=None):
    return CliRunner().invoke(main, list(args), input=input)


def write(tmp_path, doc, name="case.json"):
    path = tmp_path / name
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def test_explain_text_and_json_exit_zero():
    text = run("explain", REFERENCE)
    assert text.exit_code == 0 and "95941" in text.output
    out = run("explain", REFERENCE, "--format", "json")
    assert out.exit_code == 0 and json.loads(out.output)["schema"] == "ionm-logic/determination/v1"


def test_explain_reads_standard_input():
    out = run("explain", "-", "--format", "json", input=(ROOT / "examples" / "alif-plif-l5-s1.json").read_text())
    assert out.exit_code == 0 and json.loads(out.output)["case_id"] == "alif-plif-l5-s1"


@pytest.mark.parametrize("edit, pointer", [
    (lambda d: d["procedure"].update(surgeon_remarks="x"), "/procedure/surgeon_remarks"),
    (lambda d: d["procedure"].update(levels=["L5", "L7"]), "/procedure/levels/1"),
    (lambda d: d["procedure"].update(kind="laser_magic"), "/procedure/kind"),
    (lambda d: d["procedure"].update(region="elbow"), "/procedure/region"),
    (lambda d: d["services"][0].update(units=0), "/services/0/units"),
    (lambda d: d.update(services=[]), "/services"),
    (lambda d: d["services"][0].update(modality="eeg"), "/services/0/modality"),
    (lambda d: d["services"][0].update(modality="telepathy"), "/services/0/modality"),
    (lambda d: d.pop("date_of_service"), "/date_of_service"),
    (lambda d: d.update(date_of_service="2024-02-30"), "/date_of_service"),
    (lambda d: d.update(schema="ionm-logic/case/v2"), "/schema"),
    (lambda d: d["monitoring"]["professional"].update(concurrent_cases="two"), "/monitoring/professional/concurrent_cases"),
    (lambda d: d["clinical"].update(myelopathy="yes"), "/clinical/myelopathy"),
    (lambda d: d["clinical"].update(conus_level="L9"), "/clinical/conus_level"),
    (lambda d: d.update(payer="acme-health"), "/payer"),
    (lambda d: d.update(date_of_service="2019-12-31"), "/date_of_service"),
])
def test_bad_input_exits_2_naming_the_field(tmp_path, edit, pointer):
    doc = reference_case()
    edit(doc)
    out = run("explain", write(tmp_path, doc), "--format", "json")
    assert out.exit_code == 2, out.output
    assert pointer in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("content", ["{not json", "", "[]", "null", "\"case\""])
def test_malformed_files_exit_2(tmp_path, content):
    out = run("explain", write(tmp_path, content))
    assert out.exit_code == 2 and "Traceback" not in out.output


def test_non_utf8_and_missing_files_exit_2(tmp_path):
    path = tmp_path / "bytes.json"
    path.write_bytes(b"\xff\xfe{}")
    assert run("explain", str(path)).exit_code == 2
    assert run("explain", str(tmp_path / "nope.json")).exit_code == 2


def test_no_version_in_force_names_payer_date_and_windows(tmp_path):
    out = run("explain", REFERENCE, "--as-of", "2019-06-01")
    assert out.exit_code == 2
    assert "commercial-reference" in out.output and "2019-06-01" in out.output and "2020-01-01" in out.output


def test_bad_as_of_exits_2():
    assert run("explain", REFERENCE, "--as-of", "yesterday").exit_code == 2


def test_payer_option_overrides_a_missing_payer(tmp_path):
    doc = reference_case()
    del doc["payer"]
    path = write(tmp_path, doc)
    assert run("explain", path).exit_code == 2
    assert run("explain", path, "--payer", "commercial-reference").exit_code == 0


def test_markdown_report_has_headings_and_table():
    out = run("explain", REFERENCE, "--format", "markdown")
    assert out.exit_code == 0
    assert out.output.startswith("# Medical Necessity Determination")
    assert "## Analysis by Code" in out.output and "| Line" in out.output


def test_schema_command_prints_the_case_schema_with_the_rules_vocabularies():
    out = run("schema")
    schema = json.loads(out.output)
    assert out.exit_code == 0 and "services" in schema["properties"] and "schema" in schema["required"]
    proc = schema["$defs"]["Procedure"]["properties"]
    assert proc["levels"]["items"]["enum"][:2] == ["C1", "C2"] and proc["levels"]["items"]["enum"][-1] == "S5"
    assert "posterior_fossa" in proc["kind"]["enum"] and "L7" not in proc["levels"]["items"]["enum"]
    assert "cms-lcd-l34623" in schema["properties"]["payer"]["anyOf"][0]["enum"]


def test_schema_has_the_revision_2_fields_and_kinds():
    """domain.md §8.9: optional flags (true/false/null), minutes (int >= 1 or null), two new kinds."""
    import jsonschema

    schema = json.loads(run("schema").output)
    defs = schema["$defs"]
    proc = defs["Procedure"]["properties"]
    assert {"epilepsy_surgery", "microvascular_decompression"} <= set(proc["kind"]["enum"])
    assert "bcbsa-7.01.58" in schema["properties"]["payer"]["anyOf"][0]["enum"]
    doc = json.loads((ROOT / "examples" / "carotid-endarterectomy-in-room.json").read_text())
    doc["procedure"].update(near_eloquent_cortex=None, cranial_nerve_tumor=False, high_risk_thyroid=True,
                            anesthesia_minutes=120)
    doc["monitoring"].update(minutes=90)
    doc["monitoring"]["professional"]["exclusive_minutes"] = 45
    jsonschema.validate(doc, schema)
    for where, field, bad in (("procedure", "anesthesia_minutes", 0), ("monitoring", "minutes", "90"),
                              ("procedure", "high_risk_thyroid", "yes")):
        broken = json.loads(json.dumps(doc))
        broken[where][field] = bad
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken, schema)
    path = ROOT / "examples" / "carotid-endarterectomy-in-room.json"
    with tempfile.TemporaryDirectory() as tmp:
        bad = Path(tmp) / "bad.json"
        broken = json.loads(path.read_text())
        broken["monitoring"]["professional"]["exclusive_minutes"] = 0
        bad.write_text(json.dumps(broken))
        out = run("explain", str(bad))
        assert out.exit_code == 2 and "/monitoring/professional/exclusive_minutes" in out.output


def test_the_schema_accepts_the_examples_and_rejects_a_bad_level():
    import jsonschema  # the test extra installs it
    schema = json.loads(run("schema").output)
    for example in sorted((ROOT / "examples").glob("*.json")):
        jsonschema.validate(json.loads(example.read_text()), schema)
    bad = reference_case()
    bad["procedure"]["levels"] = ["L7"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def test_check_json_format_lists_problems_with_file_and_line(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "oops.dl").write_text("#pred q(A) :: 'q @(A)'.\nq(a, b).\n")
    out = run("check", "--rules", str(mine), "--format", "json")
    problems = json.loads(out.output)
    assert out.exit_code == 2
    assert {"file": f"{mine}/oops.dl", "line": 2, "level": "error"}.items() <= problems[0].items()


def test_policies_lists_packs_with_windows():
    out = run("policies", "--format", "json")
    rows = {(r["pack"], r["version"]): r["in_force"] for r in json.loads(out.output)}
    # domain.md §8.5: Anthem's verified version starts 2023-04-12 and closes the unverified earlier
    # one; §8.8 adds bcbsa-7.01.58 from 2022-05-15.
    assert rows == {("anthem-cg-surg-104", "2020-01-01"): ["2020-01-01", "2023-04-11"],
                    ("anthem-cg-surg-104", "2023-04-12"): ["2023-04-12", None],
                    ("bcbsa-7.01.58", "2022-05-15"): ["2022-05-15", None],
                    ("cms-lcd-l34623", "2015-10-01"): ["2015-10-01", "2024-01-31"],
                    ("cms-lcd-l34623", "2024-02-01"): ["2024-02-01", None],
                    ("commercial-reference", "2020-01-01"): ["2020-01-01", None]}
    text = run("policies")
    assert text.exit_code == 0 and "cms-lcd-l34623" in text.output and "2024-01-31" in text.output


def test_policies_shows_each_packs_encoded_scope():
    """domain.md §8.1: each pack declares its encoded scope as facts, and `policies` shows it."""
    scope = {r["pack"]: r["scope"] for r in json.loads(run("policies", "--format", "json").output)}
    cms = scope["cms-lcd-l34623"]
    assert {"spinal_decompression", "carotid_surgery", "microvascular_decompression"} <= set(cms["encoded_classes"])
    assert "spinal_tumor_resection" not in cms["encoded_classes"]
    gaps = {g["class"]: g["reason"] for g in cms["not_encoded"]}
    assert "spinal cord tumor surgery is not encoded" in gaps["spinal_tumor_resection"]
    assert scope["commercial-reference"]["encoded_modalities"] == ["eeg"]
    assert {g["class"] for g in scope["anthem-cg-surg-104"]["not_encoded"]} == {"thyroid_surgery", "peripheral_nerve_surgery"}
    text = run("policies").output
    assert "cms-lcd-l34623 encodes in full:" in text and "not encoded: spinal tumor resection" in text


def test_check_is_clean_on_shipped_rules_and_fails_on_a_bad_file(tmp_path):
    assert run("check").exit_code == 0
    bad = tmp_path / "mine"
    bad.mkdir()
    (bad / "broken.dl").write_text("#pred z(A) :: 'z @(A)'.\n\nz(a) :- .\n")
    out = run("check", "--rules", str(bad))
    assert out.exit_code == 2 and f"{bad}/broken.dl:3:" in out.output


def test_check_reports_an_unsafe_rule_with_file_and_line(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "unsafe.dl").write_text(
        "#pred zz(A) :: 'zz @(A)'.\n@rule ZZ-1\n@cites sharan-2014\n@text 'x'\nzz(A) :- level_rank(B, 1).\n")
    out = run("check", "--rules", str(mine))
    assert out.exit_code == 2 and f"{mine}/unsafe.dl:5: error:" in out.output and "unsafe" in out.output


def test_query_answers_from_the_knowledge_base():
    out = run("query", 'level_rank(Level, 24)')
    assert out.exit_code == 0 and "L5" in out.output
    out = run("query", "last_cord_level(case, Level)", "--case", REFERENCE, "--why")
    assert out.exit_code == 0 and "L1" in out.output and "ANAT-CORD-END-DEFAULT" in out.output


def test_query_rejects_unknown_predicates_and_python():
    assert run("query", "no_such(X)").exit_code == 2
    assert run("query", "__import__('os')").exit_code == 2


def test_rules_option_adds_a_pack(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "lenient.dl").write_text(
        '#citation lenient-policy {title: "Lenient", year: 2021, source: "test", evidence_level: "policy"}.\n'
        'policy_pack("lenient", "A pack that finds EMG in spine necessary").\n'
        'policy_version("lenient", "v1", "2021-01-01").\n'
        + "".join(f'determination_precedence("lenient", {d}, {i}).\n' for i, d in enumerate(
            ["not_separately_reimbursable", "requirements_not_met", "documentation_insufficient",
             "not_medically_necessary", "insufficient_evidence", "medically_necessary"], 1)) +
        '@rule LENIENT-EMG\n@cites lenient-policy\n@text \'EMG in spine is necessary here\'\n'
        'modality_line_finding(Case, Line, medically_necessary) :- applies_policy(Case, "lenient", V),\n'
        '    line_modality(Case, Line, Modality), monitors(Modality, nerve_roots), spinal_procedure(Case).\n')
    out = run("explain", REFERENCE, "--payer", "lenient", "--rules", str(mine), "--format", "json")
    assert out.exit_code == 0, out.output
    lines = {l["code"]: l for l in json.loads(out.output)["lines"]}
    assert lines["95861"]["determination"] == "medically_necessary"
    assert lines["95938"]["determination"] == "undetermined"
    assert lines["95861"]["findings"][0]["proof"]["source"]["file"] == f"{mine}/lenient.dl"


def test_test_command_runs_the_shipped_golden_cases_with_full_coverage():
    out = run("test")
    assert out.exit_code == 0, out.output
    assert out.output.rstrip().endswith("passed, 0 failed")
    assert "rule coverage: " in out.output and "not exercised" not in out.output


def test_test_command_reports_a_failing_golden_case(tmp_path):
    golden = tmp_path / "wrong.yaml"
    golden.write_text(
        'name: "L5-S1 fusion: SSEP is (wrongly) expected to be medically necessary"\n'
        f'case: {ROOT / "examples" / "alif-plif-l5-s1.json"}\n'
        'expect:\n  lines:\n    - code: "95938"\n      determination: medically_necessary\n')
    out = run("test", str(golden))
    assert out.exit_code == 1
    assert "FAIL L5-S1 fusion" in out.output
    assert "expected medically_necessary, got not_medically_necessary" in out.output
    assert "PACK-CORD-PATHWAY-ABSENT" in out.output
    assert out.output.rstrip().endswith("1 failed")
