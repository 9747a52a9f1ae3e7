"""Render a determination as Da Vinci CRD coverage information (a CDS Hooks response) or a DTR Questionnaire.

Mapping (design.md): medically_necessary -> covered; not_medically_necessary,
insufficient_evidence, not_separately_reimbursable -> not-covered (no pa-needed);
requirements_not_met, documentation_insufficient, undetermined -> conditional with info-needed
and a reason, plus doc-needed clinical and the questionnaire where missing documentation exists.
Coverage information rides only on the order (a systemActions update); the one card explains.
"""
from __future__ import annotations

import copy
import hashlib
import json
import uuid

from ..errors import InputError
from ..case import PosedCase
from ..policy import pack_titles

EXT_COVERAGE_INFORMATION = "http://hl7.org/fhir/us/davinci-crd/StructureDefinition/ext-coverage-information"
CARD_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
QUESTIONNAIRE_BASE = "https://ionm-logic.dev/Questionnaire/"
COVERED = {
    "medically_necessary": "covered",
    "not_medically_necessary": "not-covered",
    "insufficient_evidence": "not-covered",
    "not_separately_reimbursable": "not-covered",
    "requirements_not_met": "conditional",
    "documentation_insufficient": "conditional",
    "undetermined": "conditional",
}
_CARD_SUMMARY_LIMIT = 139


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, ensure_ascii=False).encode()).hexdigest()


def assertion_id(result: dict, line_key: str) -> str:
    """Stable id of one coverage assertion: (case, line, pack, version, knowledge-base sha256)."""
    return _digest(result["case_id"], line_key, result["policy"]["id"], result["policy"]["version"],
                   result["knowledge_base"]["sha256"])[:32]


def _questionnaire_id(result: dict) -> str:
    pointers = [f["pointer"] for line in result["lines"] for gap in line["missing_documentation"] for f in gap["fields"]]
    return "ionm-" + _digest(result["case_id"], result["policy"]["id"], result["policy"]["version"],
                             result["knowledge_base"]["sha256"], sorted(set(pointers)))[:16]


def questionnaire_url(result: dict) -> str:
    return QUESTIONNAIRE_BASE + _questionnaire_id(result)


def _deciding_rules(line: dict) -> list:
    return [f["rule"] for f in line["findings"] if f["determination"] == line["determination"]]


def _reason(line: dict) -> str:
    if not line["findings"]:
        return line.get("reason", "No rule concludes.")
    texts = [f["text"] for f in line["findings"] if f["determination"] == line["determination"]]
    return " ".join(texts)


def coverage_extension(result: dict, line: dict, line_key: str, coverage_ref: str, day: str, order_code=None) -> dict:
    covered = COVERED[line["determination"]]
    parts = [{"url": "coverage", "valueReference": {"reference": coverage_ref}},
             {"url": "covered", "valueCode": covered}]
    if covered == "conditional":
        if line["missing_documentation"]:
            parts.append({"url": "doc-needed", "valueCode": "clinical"})
        parts.append({"url": "info-needed", "valueCode": "OTH"})
    if order_code:
        parts.append({"url": "billingCode", "valueCoding": order_code})
    if covered == "conditional":
        parts.append({"url": "reason", "valueCodeableConcept": {"text": _reason(line)}})
        if line["missing_documentation"]:
            parts.append({"url": "questionnaire", "valueCanonical": questionnaire_url(result)})
    parts.append({"url": "date", "valueDate": day})
    parts.append({"url": "coverage-assertion-id", "valueString": assertion_id(result, line_key)})
    return {"url": EXT_COVERAGE_INFORMATION, "extension": parts}


def cds_response(kb, inp, result: dict) -> dict:
    """The CDS Hooks response for an order Bundle: one update per IONM order, one explanation card."""
    fhir_case = inp.fhir
    if fhir_case is None or fhir_case.form != "order":
        raise InputError([("", "--format crd answers IONM orders: give a FHIR order Bundle (ServiceRequests)")],
                         inp.source)
    if fhir_case.coverage is None:
        raise InputError([("/entry", "coverage information needs a Coverage in the Bundle")], inp.source)
    day = inp.case.date_of_service.isoformat()
    actions, ids = [], []
    for line, order in zip(result["lines"], fhir_case.lines):
        resource = copy.deepcopy(order.resource)
        codings = [c for c in (resource.get("code") or {}).get("coding") or [] if c.get("code") == line["code"]]
        ext = coverage_extension(result, line, order.reference, fhir_case.coverage, day,
                                 {k: codings[0][k] for k in ("system", "code") if k in codings[0]} if codings else None)
        resource.setdefault("extension", []).append(ext)
        ids.append(ext["extension"][-1]["valueString"])
        actions.append({"type": "update", "description": f"Coverage information for {order.reference} "
                                                         f"(IONM code {line['code']})", "resource": resource})
    return {"cards": [explanation_card(kb, result, fhir_case.lines, ids)], "systemActions": actions}


def explanation_card(kb, result: dict, orders: list, ids: list) -> dict:
    pack = result["policy"]["id"]
    label = pack_titles(kb).get(pack, pack)
    lines = result["lines"]
    necessary = sum(line["determination"] == "medically_necessary" for line in lines)
    summary = (f"IONM under {pack}: {necessary} of {len(lines)} order{'s' if len(lines) != 1 else ''} "
               f"medically necessary")
    rows = ["| Order | Code | Determination | Deciding rules |", "|---|---|---|---|"]
    for line, order in zip(lines, orders):
        rules = ", ".join(f"`{r}`" for r in _deciding_rules(line)) or "none (no rule concludes)"
        rows.append(f"| {order.reference} | {line['code']} | {line['determination'].replace('_', ' ')} | {rules} |")
    detail = [f"**{result['overall']['text']}**", "", *rows, ""]
    for line, order in zip(lines, orders):
        reasons = [f["text"] for f in line["findings"] if f["determination"] == line["determination"]]
        if not reasons and line.get("reason"):
            reasons = [line["reason"]]
        detail.append(f"- **{order.reference} ({line['code']})**: " + " ".join(reasons))
        for gap in line["missing_documentation"]:
            detail.append(f"  - {gap['text']}")
    detail += ["", f"Policy {pack}, version {result['policy']['version']}; knowledge base "
                   f"sha256 {result['knowledge_base']['sha256'][:12]}. Each determination's full proof: "
                   f"`ionm-logic explain` with `--format json`."]
    indicator = "info" if necessary == len(lines) else "warning"
    return {"uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, "ionm-logic:" + ":".join(ids))),
            "summary": summary[:_CARD_SUMMARY_LIMIT], "indicator": indicator, "detail": "\n".join(detail),
            "source": {"label": label,
                       "topic": {"system": CARD_TYPE_SYSTEM, "code": "coverage-info", "display": "Coverage Information"}}}


def questionnaire(inp, result: dict) -> dict:
    """A DTR Questionnaire: one item per undocumented field the missing documentation lists."""
    fields = {}
    for line in result["lines"]:
        for gap in line["missing_documentation"]:
            for f in gap["fields"]:
                values = fields.setdefault(f["pointer"], [])
                if f["value"] not in values:
                    values.append(f["value"])
    items = []
    for ptr, values in fields.items():
        path = tuple(ptr.split("/")[1:])
        item = {"linkId": ptr, "text": f"Document {PosedCase.question(path)}.",
                "required": False}
        if all(isinstance(v, bool) for v in values):
            item["type"] = "boolean"
        elif all(isinstance(v, int) for v in values):
            item["type"] = "integer"
            item["answerOption"] = [{"valueInteger": v} for v in sorted(values)]
        else:
            item["type"] = "choice"
            item["answerOption"] = [{"valueCoding": {"code": v, "display": str(v).replace("_", " ")}} for v in values]
        items.append(item)
    qid = _questionnaire_id(result)
    out = {"resourceType": "Questionnaire", "id": qid, "url": QUESTIONNAIRE_BASE + qid, "status": "active",
           "name": "IonmMissingDocumentation",
           "title": f"IONM documentation for case {result['case_id']} under {result['policy']['id']}",
           "subjectType": ["Patient"]}
    if items:
        out["item"] = items
    return out
