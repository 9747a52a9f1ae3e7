"""Write a case file v1 as a FHIR R4 Bundle (Claim or order form): the tests' twin maker.

It writes FHIR the way an EHR or payer system would (CPT codes, SNOMED CT vertebrae, ICD-10-CM,
Coverage.payor identifiers) and falls back to the project's case-fact codes only for what core
FHIR has no element for. examples/fhir/ was written with it; the twin tests read those files
back with ionm-logic's own reader, which shares no code with this writer.
"""
from __future__ import annotations

import datetime

CPT = "http://www.ama-assn.org/go/cpt"
HCPCS = "http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
ICD = "http://hl7.org/fhir/sid/icd-10-cm"
SCT = "http://snomed.info/sct"
FACT = "https://ionm-logic.dev/CodeSystem/case-fact"
PACKS = "https://ionm-logic.dev/NamingSystem/policy-pack"
VERTEBRAE = {
    "C1": "14806007", "C2": "39976000", "C3": "113205007", "C4": "5329002", "C5": "36978003", "C6": "36054005",
    "C7": "87391001", "T1": "64864005", "T2": "53733008", "T3": "1626008", "T4": "73071006", "T5": "56401006",
    "T6": "45296009", "T7": "62487009", "T8": "11068009", "T9": "82687006", "T10": "7610001", "T11": "12989004",
    "T12": "23215003", "L1": "66794005", "L2": "14293000", "L3": "36470004", "L4": "11994002", "L5": "49668003",
    "S1": "54735007",
}
# Codes the surgical-code table maps (kind, region, approaches), as a payer would read CPT.
SURGICAL = {
    "22558": ("fusion", "spine", ["anterior"]), "22630": ("fusion", "spine", ["posterior"]),
    "22633": ("fusion", "spine", ["posterior"]), "22612": ("fusion", "spine", ["posterior"]),
    "22610": ("fusion", "spine", ["posterior"]), "22551": ("fusion", "spine", ["anterior"]),
    "22552": ("fusion", "spine", ["anterior"]), "22802": ("deformity_correction", "spine", ["posterior"]),
    "63047": ("decompression", "spine", ["posterior"]), "63050": ("decompression", "spine", ["posterior"]),
    "35301": ("endarterectomy", "vascular", []),
}
FLAG_FIELDS = [("clinical", k) for k in ("myelopathy", "radiculopathy", "neurological_deficit", "tethered_cord",
                                         "conus_level")] + [
    ("monitoring", "setting"), ("monitoring", "technologist_in_room"), ("monitoring", "minutes"),
    ("monitoring", "professional", "member_of_surgical_team"), ("monitoring", "professional", "real_time"),
    ("monitoring", "professional", "concurrent_cases"), ("monitoring", "professional", "exclusive_minutes"),
    ("monitoring", "report", "findings"), ("monitoring", "note"),
    ("procedure", "near_eloquent_cortex"), ("procedure", "cranial_nerve_tumor"), ("procedure", "high_risk_thyroid"),
    ("procedure", "anesthesia_minutes"),
]


def _get(doc, path):
    for part in path:
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def _value(value, claim: bool = False) -> dict:
    if isinstance(value, bool):
        return {"valueBoolean": value}
    if isinstance(value, int):
        # Claim.supportingInfo.value[x] has no integer: a count is a Quantity there.
        return {"valueQuantity": {"value": value}} if claim else {"valueInteger": value}
    return {"valueString": value}


def _code(system, code, text=None, display=None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    out = {"coding": [coding]}
    if text:
        out["text"] = text
    return out


def case_facts(case: dict) -> list:
    """(code, value) case facts a Bundle needs beyond core FHIR, in case-file order."""
    proc = case["procedure"]
    facts = []
    mapped = [SURGICAL[c] for c in proc.get("codes", []) if c in SURGICAL]
    kinds = {m[0] for m in mapped}
    regions = {m[1] for m in mapped}
    if kinds != {proc["kind"]}:
        facts.append(("procedure.kind", proc["kind"]))
    if regions != {proc["region"]}:
        facts.append(("procedure.region", proc["region"]))
    approaches = []
    for m in mapped:
        approaches += [a for a in m[2] if a not in approaches]
    if approaches != proc.get("approaches", []):
        facts += [("procedure.approaches", a) for a in proc.get("approaches", [])]
        if not proc.get("approaches"):
            raise ValueError("the codes imply approaches the case does not state: not expressible")
    levels = proc.get("levels", [])
    # Vertebrae ride on the surgical resource's bodySite: without a surgical code there is none.
    if not proc.get("codes") or any(level not in VERTEBRAE for level in levels) or len(set(levels)) != len(levels):
        facts += [("procedure.levels", level) for level in levels]
    facts += [("procedure.instrumentation", d) for d in proc.get("instrumentation", [])]
    for path in FLAG_FIELDS:
        value = _get(case, path)
        if value is not None:
            facts.append((".".join(path), value))
    facts += [("monitoring.report.interventions", t) for t in _get(case, ("monitoring", "report", "interventions")) or []]
    return facts


def to_bundle(case: dict, form: str, bundle_id: str = None) -> dict:
    """The case as a Bundle: form 'claim' (a Claim and its Procedures) or 'order' (ServiceRequests)."""
    proc = case["procedure"]
    bundle_id = bundle_id or case["case_id"]
    entries = []

    def add(resource):
        entries.append({"fullUrl": f"urn:uuid:{resource['resourceType'].lower()}-{resource['id']}", "resource": resource})
        return {"reference": f"{resource['resourceType']}/{resource['id']}"}

    dos = case["date_of_service"]
    patient = {"resourceType": "Patient", "id": "patient"}
    if case.get("patient"):
        if case["patient"].get("sex"):
            patient["gender"] = {"M": "male", "F": "female"}.get(case["patient"]["sex"], case["patient"]["sex"])
        if case["patient"].get("age") is not None:
            day = datetime.date.fromisoformat(dos)
            patient["birthDate"] = datetime.date(day.year - case["patient"]["age"], 1, 1).isoformat()
    patient_ref = add(patient)
    coverage = {"resourceType": "Coverage", "id": "coverage", "status": "active", "beneficiary": patient_ref,
                "payor": [{"identifier": {"system": PACKS, "value": case["payer"]}, "display": case["payer"]}]}
    coverage_ref = add(coverage)
    body_sites = [] if any(f[0] == "procedure.levels" for f in case_facts(case)) else \
        [_code(SCT, VERTEBRAE[level], display=f"{level} vertebra") for level in proc.get("levels", [])]
    codes = proc.get("codes", [])
    if not codes and form == "order":
        raise ValueError("an order Bundle needs a surgical code")
    surgical_refs = []
    for k, code in enumerate(codes):
        concept = _code(CPT, code, text=proc.get("description") if k == 0 else None)
        if form == "order":
            res = {"resourceType": "ServiceRequest", "id": f"surgery-{k + 1}", "status": "active", "intent": "order",
                   "code": concept, "subject": patient_ref, "occurrenceDateTime": dos}
        else:
            res = {"resourceType": "Procedure", "id": f"surgery-{k + 1}", "status": "completed", "code": concept,
                   "subject": patient_ref, "performedDateTime": dos}
        if k == 0 and body_sites:
            res["bodySite"] = body_sites
        surgical_refs.append(add(res))
    diagnoses = [_code(ICD, d["code"], display=d.get("text")) for d in case.get("diagnoses", [])]
    facts = case_facts(case)
    history = case.get("history", [])
    if form == "order":
        for k, dx in enumerate(diagnoses):
            add({"resourceType": "Condition", "id": f"condition-{k + 1}", "code": dx, "subject": patient_ref})
        orders = []
        for i, service in enumerate(case["services"]):
            system = HCPCS if service["code"][:1].isalpha() else CPT
            sr = {"resourceType": "ServiceRequest", "id": f"ionm-{i + 1}", "status": "draft", "intent": "order",
                  "code": _code(system, service["code"]), "subject": patient_ref, "occurrenceDateTime": dos,
                  "basedOn": [surgical_refs[0]], "insurance": [coverage_ref]}
            if "units" in service:
                sr["quantityQuantity"] = {"value": service["units"]}
            orders.append(add(sr))
        for k, (code, value) in enumerate(facts):
            add({"resourceType": "Observation", "id": f"fact-{k + 1}", "status": "final",
                 "code": _code(FACT, code), "subject": patient_ref, **_value(value)})
        for i, service in enumerate(case["services"]):
            if service.get("modality"):
                add({"resourceType": "Observation", "id": f"line-{i + 1}-modality", "status": "final",
                     "code": _code(FACT, "services.modality"), "subject": patient_ref, "focus": [orders[i]],
                     "valueString": service["modality"]})
        for h, entry in enumerate(history):
            add(_history(entry, h, patient_ref))
    else:
        infos, items = [], []
        for code, value in facts:
            infos.append({"sequence": len(infos) + 1, "category": _code("http://terminology.hl7.org/CodeSystem/claiminformationcategory", "info"),
                          "code": _code(FACT, code), **_value(value, claim=True)})
        for h, entry in enumerate(history):
            ref = add(_history(entry, h, patient_ref))
            infos.append({"sequence": len(infos) + 1, "category": _code("http://terminology.hl7.org/CodeSystem/claiminformationcategory", "info"),
                          "code": _code(FACT, "history"), "valueReference": ref})
        for i, service in enumerate(case["services"]):
            system = HCPCS if service["code"][:1].isalpha() else CPT
            item = {"sequence": i + 1, "productOrService": _code(system, service["code"]), "servicedDate": dos}
            if "units" in service:
                item["quantity"] = {"value": service["units"]}
            if service.get("modality"):
                infos.append({"sequence": len(infos) + 1, "category": _code("http://terminology.hl7.org/CodeSystem/claiminformationcategory", "info"),
                              "code": _code(FACT, "services.modality"), "valueString": service["modality"]})
                item["informationSequence"] = [len(infos)]
            items.append(item)
        claim = {"resourceType": "Claim", "id": "claim", "status": "active",
                 "type": _code("http://terminology.hl7.org/CodeSystem/claim-type", "professional"),
                 "use": "claim", "patient": patient_ref, "created": dos,
                 "provider": {"display": "IONM professional group"},
                 "priority": _code("http://terminology.hl7.org/CodeSystem/processpriority", "normal"),
                 "insurance": [{"sequence": 1, "focal": True, "coverage": coverage_ref}],
                 "item": items}
        if surgical_refs:
            claim["procedure"] = [{"sequence": k + 1, "procedureReference": ref} for k, ref in enumerate(surgical_refs)]
        if diagnoses:
            claim["diagnosis"] = [{"sequence": k + 1, "diagnosisCodeableConcept": dx} for k, dx in enumerate(diagnoses)]
        if infos:
            claim["supportingInfo"] = infos
        entries.insert(0, {"fullUrl": "urn:uuid:claim-claim", "resource": claim})
    return {"resourceType": "Bundle", "id": bundle_id, "identifier": {"system": "https://ionm-logic.dev/case-id",
                                                                      "value": case["case_id"]},
            "type": "collection", "entry": entries}


def _history(entry: dict, h: int, patient_ref: dict) -> dict:
    components = [{"code": _code(FACT, "history.procedure"), "valueString": entry["procedure"]}]
    components += [{"code": _code(FACT, "history.levels"), "valueString": level} for level in entry.get("levels", [])]
    if entry.get("outcome") is not None:
        components.append({"code": _code(FACT, "history.outcome"), "valueString": entry["outcome"]})
    return {"resourceType": "Observation", "id": f"history-{h + 1}", "status": "final",
            "code": _code(FACT, "history"), "subject": patient_ref, "component": components}
