"""FHIR R4 input, Da Vinci CRD output, the DTR questionnaire and answers: structure, invariants, twins."""
import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import ROOT
from ionm_logic.cli import main

FHIR_EXAMPLES = sorted((ROOT / "examples" / "fhir").glob("*.json"))
ORDER_EXAMPLES = [p for p in FHIR_EXAMPLES if p.name.endswith(".order.json")]
EXT = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"

# The CRD STU 2.2 invariants on ext-coverage-information (fhir-notes.md), as FHIRPath on the extension.
INVARIANTS = {
    "q1": "extension.where(url='questionnaire').exists() implies extension.where(url = 'doc-needed').exists()",
    "q2": "extension.where(url = 'covered' and value = 'not-covered').exists() implies "
          "extension.where(url = 'pa-needed').exists().not()",
    "q3": "extension.where((url = 'covered' or url = 'pa-needed' or url = 'doc-needed') and value = 'conditional')"
          ".count() >= 1 implies extension.where(url = 'info-needed').exists()",
    "q4": "extension.where(url = 'doc-purpose' and value = 'withpa').exists() implies "
          "extension.where(url = 'pa-needed' and (value = 'satisfied' or value = 'no-auth')).exists().not() and "
          "extension.where(url = 'covered' and value = 'not-covered').exists().not()",
    "q5": "extension.where(url = 'satisfied-pa-id').exists() = extension.where(url = 'pa-needed' and value = 'satisfied').exists()",
    "q6": "extension.where(url = 'info-needed' and value = 'OTH').exists() implies extension.where(url = 'reason').exists()",
    "q7": "extension.where(url = 'reason').all(value.coding.where(system = "
          "'http://hl7.org/fhir/us/davinci-crd/CodeSystem/temp').exists() or value.text.exists())",
    "q8": "extension.where(url = 'doc-purpose' and value != 'conditional').exists() implies extension.where(url = 'reason').exists()",
    "q9": "extension.where(value = 'indeterminate').exists() implies extension.where(url = 'reason').exists()",
}
COVERED = {"medically_necessary": "covered", "not_medically_necessary": "not-covered",
           "insufficient_evidence": "not-covered", "not_separately_reimbursable": "not-covered",
           "requirements_not_met": "conditional", "documentation_insufficient": "conditional",
           "undetermined": "conditional"}


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def explain_json(path, *extra):
    out = run("explain", path, "--format", "json", *extra)
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def twin_of(path: Path) -> Path:
    return ROOT / "examples" / (path.name.split(".")[0] + ".json")


def signature(result):
    """What must match between twins: per line the headline, every finding's rule and determination,
    considerations, missing documentation; observations and the overall headline."""
    return ([(l["code"], l["units"], l["modality"], l["determination"],
              [(f["rule"], f["determination"]) for f in l["findings"]], [c["rule"] for c in l["considerations"]],
              l["missing_documentation"]) for l in result["lines"]],
            [o["rule"] for o in result["observations"]], result["overall"], result["case_id"], result["payer"],
            result["policy"])


def resolve(doc, ptr):
    for part in ptr.split("/")[1:]:
        part = part.replace("~1", "/").replace("~0", "~")
        doc = doc[int(part)] if isinstance(doc, list) else doc[part]
    return doc


def case_leaves(node):
    if isinstance(node, dict):
        if node.get("node") == "case":
            yield node
        for value in node.values():
            yield from case_leaves(value)
    elif isinstance(node, list):
        for value in node:
            yield from case_leaves(value)


def test_examples_cover_both_bundle_forms_and_the_reference_case():
    forms = {p.name.split(".")[1] for p in FHIR_EXAMPLES}
    assert forms == {"claim", "order"} and len({twin_of(p) for p in FHIR_EXAMPLES}) >= 4
    assert (ROOT / "examples" / "fhir" / "alif-plif-l5-s1.claim.json").exists()


@pytest.mark.parametrize("path", FHIR_EXAMPLES, ids=lambda p: p.name)
def test_each_fhir_example_decides_exactly_as_its_case_v1_twin(path):
    assert signature(explain_json(path)) == signature(explain_json(twin_of(path)))


@pytest.mark.parametrize("path", FHIR_EXAMPLES, ids=lambda p: p.name)
def test_every_case_leaf_of_a_fhir_proof_points_at_a_value_in_the_bundle(path):
    bundle = json.loads(path.read_text())
    result = explain_json(path)
    leaves = list(case_leaves(result))
    assert leaves
    for leaf in leaves:
        assert leaf["pointer"].startswith("/entry/"), leaf
        resolve(bundle, leaf["pointer"])  # raises if the pointer names nothing


def test_the_reference_claim_cites_its_items_and_its_payor():
    result = explain_json(ROOT / "examples" / "fhir" / "alif-plif-l5-s1.claim.json")
    pointers = {leaf["atom"]: leaf["pointer"] for leaf in case_leaves(result)}
    # The Claim is entry 0 (the writer puts it first); item 0 bills 95938.
    assert pointers['billed_line(case, "/services/0", "95938")'] == "/entry/0/resource/item/0/productOrService/coding/0/code"
    bundle = json.loads((ROOT / "examples" / "fhir" / "alif-plif-l5-s1.claim.json").read_text())
    payer_at = [p for a, p in pointers.items() if a.startswith("applies_policy")][0]
    assert resolve(bundle, payer_at) == "commercial-reference" and "/payor/" in payer_at


def test_explain_of_a_case_file_does_not_import_the_fhir_or_server_libraries():
    code = ("import runpy, sys\nsys.argv = ['ionm-logic', 'explain', sys.argv[1]]\n"
            "try:\n    runpy.run_module('ionm_logic', run_name='__main__')\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fhir', 'fhirpathpy', 'fastapi', 'uvicorn', 'starlette')"
            " or m.startswith('ionm_logic.fhir')), file=sys.stderr)")
    out = subprocess.run([sys.executable, "-c", code, str(ROOT / "examples" / "alif-plif-l5-s1.json")],
                         capture_output=True, text=True, cwd=ROOT)
    assert "SSEP" in out.stdout
    assert out.stderr.strip().splitlines()[-1] == "[]"


def _bundle():
    return json.loads((ROOT / "examples" / "fhir" / "alif-plif-l5-s1.claim.json").read_text())


def _edit(tmp_path, change):
    doc = _bundle()
    change(doc)
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc))
    return run("explain", path)


def _claim(doc):
    return doc["entry"][0]["resource"]


def _surgery(doc):
    return next(e["resource"] for e in doc["entry"] if e["resource"].get("id") == "surgery-1")


def _surgery_at(doc):
    return next(i for i, e in enumerate(doc["entry"]) if e["resource"].get("id") == "surgery-1")


BAD = [
    ("an item without a CPT or HCPCS coding",
     lambda d: _claim(d)["item"][0]["productOrService"]["coding"][0].update(system="http://example.org/local"),
     "/entry/0/resource/item/0/productOrService", "no CPT or HCPCS coding"),
    ("an element FHIR R4 does not have",
     lambda d: _claim(d)["item"][1].update(colour="blue"), "/entry/0/resource/item/1/colour", "unknown element"),
    ("a wrong FHIR type", lambda d: _claim(d)["item"][1].update(sequence="two"),
     "/entry/0/resource/item/1/sequence", "not valid FHIR R4"),
    ("an unknown resource type", lambda d: d["entry"].append({"resource": {"resourceType": "Gizmo"}}),
     "/resourceType", "not a FHIR R4 resource type"),
    ("a payer identifier no pack is mapped to",
     lambda d: next(e["resource"] for e in d["entry"] if e["resource"]["resourceType"] == "Coverage")["payor"][0]
     ["identifier"].update(value="acme-health"), "/payor/0", "unknown payer"),
    ("a bodySite that is not a vertebra",
     lambda d: _surgery(d)["bodySite"][0]["coding"][0].update(code="122496007"), "/bodySite/0/coding/0/code",
     "not a vertebra"),
    ("a surgical code that names no procedure kind",
     lambda d: [r["resource"]["code"]["coding"][0].update(code="99999") for r in d["entry"]
                if r["resource"]["resourceType"] == "Procedure"], "", "no surgical code maps to a procedure kind"),
    ("a case-fact code the CodeSystem lacks",
     lambda d: _claim(d)["supportingInfo"][0]["code"]["coding"][0].update(code="clinical.mood"),
     "/entry/0/resource/supportingInfo/0/code/coding/0/code", "is not a code of"),
    ("a case-fact value of the wrong type",
     lambda d: _claim(d)["supportingInfo"][0].update(valueBoolean=None, valueString="yes") or
     _claim(d)["supportingInfo"][0].pop("valueBoolean"), "/entry/0/resource/supportingInfo/", "case field /"),
    ("a Bundle with no identifier and no id", lambda d: d.pop("identifier") and d.pop("id"), "(document)",
     "no case id"),
]


@pytest.mark.parametrize("name,change,where,message", BAD, ids=[b[0] for b in BAD])
def test_a_bundle_the_mapping_cannot_read_exits_2_naming_the_bundle_pointer(tmp_path, name, change, where, message):
    out = _edit(tmp_path, change)
    assert out.exit_code == 2, out.output
    assert where in out.output and message in out.output, out.output
    assert "Traceback" not in out.output


def test_an_unknown_vertebral_level_in_a_case_fact_names_the_value_in_the_bundle(tmp_path):
    def change(doc):
        _surgery(doc).pop("bodySite")
        _claim(doc)["supportingInfo"].append({"sequence": 99, "category": {"coding": [{"code": "info"}]},
                                              "code": {"coding": [{"system": "https://ionm-logic.dev/CodeSystem/case-fact",
                                                                   "code": "procedure.levels"}]},
                                              "valueString": "L7"})
    out = _edit(tmp_path, change)
    n = len(_bundle()["entry"][0]["resource"]["supportingInfo"])
    assert out.exit_code == 2
    assert f"/entry/0/resource/supportingInfo/{n}/valueString: unknown vertebral level 'L7'" in out.output


def extensions(response):
    for action in response["systemActions"]:
        (ext,) = [e for e in action["resource"]["extension"] if e["url"] == EXT]
        yield action, ext


def sub(ext, url):
    return [next(v for k, v in e.items() if k.startswith("value")) for e in ext["extension"] if e["url"] == url]


@pytest.mark.parametrize("path", ORDER_EXAMPLES, ids=lambda p: p.name)
def test_crd_output_is_valid_fhir_and_holds_every_crd_invariant(path):
    from fhir.resources.R4B.extension import Extension
    from fhir.resources.R4B.servicerequest import ServiceRequest
    from fhirpathpy import compile as fp_compile
    from fhirpathpy.models import models

    out = run("explain", path, "--format", "crd")
    assert out.exit_code == 0, out.output
    response = json.loads(out.output)
    result = explain_json(path)
    bundle = json.loads(path.read_text())
    orders = [e["resource"] for e in bundle["entry"]
              if e["resource"]["resourceType"] == "ServiceRequest" and e["resource"].get("basedOn")]
    assert len(response["systemActions"]) == len(result["lines"]) == len(orders)
    checks = {q: fp_compile(expr, models["r4"]) for q, expr in INVARIANTS.items()}
    for (action, ext), line, order in zip(extensions(response), result["lines"], orders):
        assert action["type"] == "update"
        ServiceRequest.model_validate(action["resource"])
        Extension.model_validate(ext)
        # Nothing else changed: the order minus the one added extension is the order sent.
        sent = copy.deepcopy(action["resource"])
        sent["extension"] = [e for e in sent["extension"] if e["url"] != EXT]
        if not sent["extension"]:
            del sent["extension"]
        assert sent == order
        for q, check in checks.items():
            assert check(ext) == [True], (q, ext)
        assert sub(ext, "covered") == [COVERED[line["determination"]]]
        assert sub(ext, "coverage") == [{"reference": "Coverage/coverage"}]
        assert sub(ext, "date") == [result_date(bundle)]
        assert sub(ext, "pa-needed") == [] or COVERED[line["determination"]] != "not-covered"
        if COVERED[line["determination"]] == "conditional":
            assert sub(ext, "info-needed") and sub(ext, "reason")
            assert bool(sub(ext, "questionnaire")) == bool(line["missing_documentation"])
        assert len(sub(ext, "coverage-assertion-id")) == 1
    (card,) = response["cards"]
    assert len(card["summary"]) < 140 and card["indicator"] in ("info", "warning", "critical")
    assert card["source"]["topic"]["system"] == "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
    assert card["source"]["topic"]["code"] == "coverage-info"
    assert "extension" not in card and "coverage-assertion-id" not in json.dumps(card)
    for line in result["lines"]:
        for finding in line["findings"]:
            if finding["determination"] == line["determination"]:
                assert finding["rule"] in card["detail"]


def result_date(bundle):
    return next(e["resource"]["occurrenceDateTime"][:10] for e in bundle["entry"]
                if e["resource"]["resourceType"] == "ServiceRequest")


def test_the_invariant_checks_can_fail():
    """fhirpathpy with the R4 model resolves value[x]: a broken extension fails q2, q3 and q6."""
    from fhirpathpy import evaluate
    from fhirpathpy.models import models

    bad = {"url": EXT, "extension": [{"url": "covered", "valueCode": "not-covered"},
                                     {"url": "pa-needed", "valueCode": "auth-needed"}]}
    assert evaluate(bad, INVARIANTS["q2"], {}, models["r4"]) == [False]
    bad = {"url": EXT, "extension": [{"url": "covered", "valueCode": "conditional"}]}
    assert evaluate(bad, INVARIANTS["q3"], {}, models["r4"]) == [False]
    bad = {"url": EXT, "extension": [{"url": "info-needed", "valueCode": "OTH"}]}
    assert evaluate(bad, INVARIANTS["q6"], {}, models["r4"]) == [False]


def test_coverage_assertion_ids_are_stable_per_line_and_change_with_the_pack():
    path = ROOT / "examples" / "fhir" / "alif-plif-l5-s1.order.json"
    first = [sub(e, "coverage-assertion-id")[0] for _a, e in extensions(json.loads(run("explain", path, "--format", "crd").output))]
    again = [sub(e, "coverage-assertion-id")[0] for _a, e in extensions(json.loads(run("explain", path, "--format", "crd").output))]
    other = [sub(e, "coverage-assertion-id")[0] for _a, e in
             extensions(json.loads(run("explain", path, "--format", "crd", "--payer", "anthem-cg-surg-104").output))]
    assert first == again and len(set(first)) == len(first) and not set(first) & set(other)


def test_crd_needs_an_order_bundle():
    out = run("explain", ROOT / "examples" / "alif-plif-l5-s1.json", "--format", "crd")
    assert out.exit_code == 2 and "order Bundle" in out.output


def test_the_questionnaire_asks_for_each_missing_field_and_answers_decide_as_the_filled_in_twin(tmp_path):
    from fhir.resources.R4B.questionnaire import Questionnaire
    from fhir.resources.R4B.questionnaireresponse import QuestionnaireResponse

    path = ROOT / "examples" / "fhir" / "alif-plif-l5-s1.order.json"
    result = explain_json(path)
    q = json.loads(run("explain", path, "--format", "questionnaire").output)
    Questionnaire.model_validate(q)
    wanted = {f["pointer"] for l in result["lines"] for g in l["missing_documentation"] for f in g["fields"]}
    assert {item["linkId"] for item in q["item"]} == wanted == {"/monitoring/professional/concurrent_cases"}
    (item,) = q["item"]
    assert item["type"] == "integer" and [o["valueInteger"] for o in item["answerOption"]] == [1, 2]
    # The CRD extension of the conditional line links this questionnaire.
    response = json.loads(run("explain", path, "--format", "crd").output)
    assert [sub(e, "questionnaire") for _a, e in extensions(response) if sub(e, "questionnaire")] == [[q["url"]]]
    # Answering 2 concurrent cases: the reference's 95941 line becomes requirements_not_met (the commercial
    # policy pays one patient's undivided attention only), exactly as the case file with the field filled in.
    qr = {"resourceType": "QuestionnaireResponse", "status": "completed", "questionnaire": q["url"],
          "item": [{"linkId": item["linkId"], "answer": [{"valueInteger": 2}]}]}
    QuestionnaireResponse.model_validate(qr)
    qr_path = tmp_path / "qr.json"
    qr_path.write_text(json.dumps(qr))
    answered = explain_json(path, "--answers", qr_path)
    twin = json.loads(twin_of(path).read_text())
    twin["monitoring"]["professional"]["concurrent_cases"] = 2
    twin_path = tmp_path / "twin.json"
    twin_path.write_text(json.dumps(twin))
    assert signature(answered) == signature(explain_json(twin_path))
    assert answered["lines"][5]["determination"] == "requirements_not_met"
    pointers = {leaf["pointer"] for leaf in case_leaves(answered)}
    assert f"{qr_path}#/item/0/answer/0/valueInteger" in pointers


def test_an_answer_to_a_documented_field_or_an_unknown_link_is_bad_input(tmp_path):
    path = ROOT / "examples" / "fhir" / "alif-plif-l5-s1.order.json"
    for link, value, message in [("/monitoring/setting", {"valueCoding": {"code": "in_room"}}, "already documented"),
                                 ("/monitoring/mood", {"valueString": "calm"}, "not the JSON pointer of a case field")]:
        qr = {"resourceType": "QuestionnaireResponse", "status": "completed",
              "item": [{"linkId": link, "answer": [value]}]}
        qr_path = tmp_path / "qr.json"
        qr_path.write_text(json.dumps(qr))
        out = run("explain", path, "--answers", qr_path)
        assert out.exit_code == 2 and "/item/0/linkId" in out.output and message in out.output, out.output


def test_batch_decides_fhir_bundles_like_their_twins(tmp_path):
    lines = [json.dumps(json.loads(p.read_text())) for p in FHIR_EXAMPLES]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = run("batch", src, "-o", tmp_path / "out.jsonl")
    assert out.exit_code == 0, out.output
    records = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [signature(r) for r in records] == [signature(explain_json(twin_of(p))) for p in FHIR_EXAMPLES]


def test_a_bad_bundle_in_a_batch_is_an_error_record_naming_the_bundle_pointer_and_the_others_run(tmp_path):
    good = json.loads(FHIR_EXAMPLES[0].read_text())
    bad = copy.deepcopy(good)
    bad["identifier"]["value"] = "broken-bundle"
    coverage = next(e["resource"] for e in bad["entry"] if e["resource"]["resourceType"] == "Coverage")
    coverage["payor"][0]["identifier"]["value"] = "acme-health"
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(json.dumps(d) for d in (good, bad, good)) + "\n")
    run("batch", src, "-o", tmp_path / "out.jsonl")
    records = [json.loads(l) for l in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["schema"] for r in records] == ["ionm-logic/determination/v1", "ionm-logic/error/v1",
                                              "ionm-logic/determination/v1"]
    error = records[1]
    assert error["case_id"] == "broken-bundle" and error["error"]["pointer"].endswith("/resource/payor/0")
    assert "unknown payer" in error["error"]["message"]


def _twin_signature(kb, doc):
    from ionm_logic.api import explain_input
    from ionm_logic.inputs import parse_input

    inp = parse_input(json.dumps(doc).encode(), kb)
    return signature(explain_input(kb, inp).document), inp


@pytest.mark.parametrize("form", ["claim", "order"])
def test_any_case_written_as_a_bundle_decides_as_the_case(kb, form):
    """Generated cases through the twin writer and back: every line's headline, rules and missing
    documentation are the case file's, and every case leaf points at a value in the Bundle."""
    from hypothesis import HealthCheck, assume, given, settings

    from fhir_twins import to_bundle
    from strategies import cases

    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                     HealthCheck.function_scoped_fixture])
    @given(cases())
    def check(doc):
        doc["case_id"] = "generated-case"  # FHIR ids and identifier values cannot be any text
        assume(form == "claim" or doc["procedure"]["codes"])  # an order Bundle needs the surgical order
        try:
            bundle = to_bundle(doc, form)
        except ValueError:
            assume(False)  # the codes imply an approach the case leaves out: FHIR cannot say "none"
        expected, _ = _twin_signature(kb, doc)
        got, inp = _twin_signature(kb, bundle)
        assert got == expected
        result = explain_json_in_process(kb, inp)
        for leaf in case_leaves(result):
            resolve(bundle, leaf["pointer"])

    check()


def explain_json_in_process(kb, inp):
    from ionm_logic.api import explain_input

    return explain_input(kb, inp).document


def test_payer_override_reads_a_bundle_whose_payer_maps_to_no_pack(tmp_path):
    doc = _bundle()
    next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Coverage")["payor"][0][
        "identifier"]["value"] = "acme-health"
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc))
    assert run("explain", path).exit_code == 2
    result = explain_json(path, "--payer", "anthem-cg-surg-104")
    assert result["payer"] == "anthem-cg-surg-104"
    assert signature(result) == signature(explain_json(twin_of(FHIR_EXAMPLES[0]), "--payer", "anthem-cg-surg-104"))


def test_a_bundle_without_coverage_says_so(tmp_path):
    doc = _bundle()
    doc["entry"] = [e for e in doc["entry"] if e["resource"]["resourceType"] != "Coverage"]
    _claim(doc)["insurance"][0]["coverage"] = {"display": "unknown"}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc))
    out = run("explain", path)
    assert out.exit_code == 2 and "/entry: no Coverage with a payor" in out.output, out.output


def test_an_order_bundle_with_two_coverages_and_no_insurance_reference_is_not_guessed(tmp_path):
    doc = json.loads((ROOT / "examples" / "fhir" / "c5-c6-acdf-myelopathy-in-room.order.json").read_text())
    coverage = next(e for e in doc["entry"] if e["resource"]["resourceType"] == "Coverage")
    second = copy.deepcopy(coverage)
    second["resource"]["id"] = "coverage-2"
    second["fullUrl"] = "urn:uuid:coverage-2"
    doc["entry"].append(second)
    for e in doc["entry"]:
        e["resource"].pop("insurance", None)
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc))
    out = run("explain", path)
    assert out.exit_code == 2 and f"/entry/{len(doc['entry']) - 1}/resource: several Coverages" in out.output, out.output


def test_the_case_fact_code_system_has_a_code_for_every_case_file_field(kb):
    """One code per case/v1 field: every leaf of the case model, or the list of objects it sits
    in (diagnoses), is a code of rules/fhir/fhir-case-facts.dl, so a new field cannot go unmapped."""
    import typing

    from pydantic import BaseModel

    from ionm_logic.case import Case

    codes = {code for code, _where, _element in kb.values("fhir_case_fact", None, None, None)}

    def leaves(model, prefix):
        for name, info in model.model_fields.items():
            name = "schema" if name == "schema_" else name
            annotation = info.annotation
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if typing.get_origin(annotation) is typing.Union and len(args) == 1:
                annotation = args[0]
            inner = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
            path = prefix + (name,)
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                if typing.get_origin(annotation) is list:
                    yield path
                yield from leaves(inner, path)
            else:
                yield path

    missing = [".".join(p) for p in leaves(Case, ()) if ".".join(p) not in codes
               and not any(".".join(p[:n]) in codes and n < len(p) and p[:n] == ("diagnoses",) for n in range(1, len(p)))]
    assert missing == []
    # And nothing in the CodeSystem names a field the model lacks, but for the optional fields
    # domain.md section 8.9 adds (another change brings them into the case model).
    planned = {"procedure.near_eloquent_cortex", "procedure.cranial_nerve_tumor", "procedure.high_risk_thyroid",
               "procedure.anesthesia_minutes", "monitoring.minutes", "monitoring.professional.exclusive_minutes"}
    known = {".".join(p) for p in leaves(Case, ())}
    assert codes - known - planned == set()


@pytest.mark.parametrize("answer_true", [True, False])
def test_answering_every_question_decides_as_the_twin_with_those_fields_documented(tmp_path, answer_true):
    """Boolean, integer and choice questions alike: a QuestionnaireResponse answering each item
    (booleans with `answer_true`, others with their first option) decides exactly as the case file
    with the same values written in."""
    path = ROOT / "examples" / "fhir" / "l1-l2-decompression-remote-undocumented.order.json"
    q = json.loads(run("explain", path, "--format", "questionnaire").output)
    assert {item["type"] for item in q["item"]} >= {"boolean", "integer"}
    twin = json.loads(twin_of(path).read_text())
    items = []
    for item in q["item"]:
        if item["type"] == "boolean":
            answer, value = {"valueBoolean": answer_true}, answer_true
        elif item["type"] == "integer":
            value = item["answerOption"][0]["valueInteger"]
            answer = {"valueInteger": value}
        else:
            value = item["answerOption"][0]["valueCoding"]["code"]
            answer = {"valueCoding": {"code": value}}
        items.append({"linkId": item["linkId"], "answer": [answer]})
        node = twin
        parts = item["linkId"].split("/")[1:]
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    qr_path, twin_path = tmp_path / "qr.json", tmp_path / "twin.json"
    qr_path.write_text(json.dumps({"resourceType": "QuestionnaireResponse", "status": "completed", "item": items}))
    twin_path.write_text(json.dumps(twin))
    assert signature(explain_json(path, "--answers", qr_path)) == signature(explain_json(twin_path))


def test_a_payer_adds_its_own_identifier_in_a_rules_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "acme.dl").write_text(
        "% ============================================================================\n"
        "% acme.dl — Acme Health's payer identifier.\n% Source: Acme's payer list.\n"
        "% ============================================================================\n\n"
        '#citation acme-payer-list {\n    title: "Acme payer identifiers", year: 2026, source: "Acme",\n'
        '    evidence_level: "code set", verified: yes, kind: reference\n}.\n\n'
        "@cites acme-payer-list\n"
        'fhir_payer_identifier("http://www.naic.org", "12345", "anthem-cg-surg-104").\n')
    doc = _bundle()
    coverage = next(e["resource"] for e in doc["entry"] if e["resource"]["resourceType"] == "Coverage")
    coverage["payor"][0]["identifier"] = {"system": "http://www.naic.org", "value": "12345"}
    path = tmp_path / "bundle.json"
    path.write_text(json.dumps(doc))
    assert run("explain", path).exit_code == 2
    result = explain_json(path, "--rules", mine)
    assert result["payer"] == "anthem-cg-surg-104"


def test_every_policy_pack_can_be_named_by_a_coverage_payor(kb):
    packs = {pack for pack, _title in kb.values("policy_pack", None, None)}
    named = {pack for system, _value, pack in kb.values("fhir_payer_identifier", None, None, None)
             if system == "https://ionm-logic.dev/NamingSystem/policy-pack"}
    assert packs == named
