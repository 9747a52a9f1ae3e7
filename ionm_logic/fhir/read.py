"""Read a FHIR R4 Bundle (Claim-centred or order) as a case file v1, remembering where each field came from.

Only FHIR structure is code here: which element carries which case field. What a code means
(CPT -> procedure kind, region, approach; SNOMED CT vertebra -> level; payer identifier ->
pack; which case-fact codes exist) is asked of the knowledge base (rules/fhir/). The result is
a case/v1 document validated by the ordinary case parser, plus a map from every case pointer
to the Bundle pointer it came from, so proofs and errors cite the user's own file. What the
mapping cannot read completely is an error naming the Bundle pointer, never a guess.
"""
from __future__ import annotations

import datetime
import functools
import json
import typing
from dataclasses import dataclass
from typing import Optional

from pydantic import BaseModel

from ..case import CASE_SCHEMA, Case, parse_case
from ..errors import InputError, pointer
from ..lang.contract import (FHIR_CASE_FACT, FHIR_PAYER_IDENTIFIER, FHIR_SNOMED_VERTEBRA, FHIR_SURGICAL_CODE_APPROACH,
                             FHIR_SURGICAL_CODE_PROCEDURE, KNOWN_CODE)

CASE_FACT_SYSTEM = "https://ionm-logic.dev/CodeSystem/case-fact"
CPT_SYSTEMS = ("http://www.ama-assn.org/go/cpt", "https://www.ama-assn.org/go/cpt")
HCPCS_SYSTEMS = ("http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
                 "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets")
ICD10CM_SYSTEM = "http://hl7.org/fhir/sid/icd-10-cm"
SNOMED_SYSTEM = "http://snomed.info/sct"
CLAIM_USES = ("claim", "preauthorization")


@dataclass
class Line:
    """One IONM line as FHIR gave it: the order resource (order Bundles) and where it is."""
    at: str                      # Bundle pointer of the Claim.item or ServiceRequest
    resource: Optional[dict]     # the ServiceRequest (order Bundles), else None
    reference: Optional[str]     # "ServiceRequest/id"


@dataclass
class FhirCase:
    """A Bundle read as a case: the validated case, the case/v1 document and the pointer map."""
    bundle: dict
    document: dict
    case: Case
    pointers: dict               # case pointer -> Bundle pointer
    form: str                    # "claim" or "order"
    lines: list                  # Line per service, in order
    coverage: Optional[str]      # "Coverage/id" of the coverage decided under
    source: str = ""

    def locate(self, case_pointer: str) -> str:
        """The Bundle pointer a case pointer came from (its nearest mapped ancestor)."""
        ptr = case_pointer
        while True:
            if ptr in self.pointers:
                return self.pointers[ptr]
            if not ptr:
                return ""
            ptr = ptr.rsplit("/", 1)[0]



def _validate_structure(doc: dict, source: str) -> None:
    """FHIR R4 structure (fhir.resources R4B models): every resource type known, every element valid."""
    from fhir.resources.R4B import get_fhir_model_class

    problems = []
    entries = doc.get("entry", [])
    if not isinstance(entries, list):
        raise InputError([("/entry", "Bundle.entry must be an array")], source)
    shell = dict(doc)
    shell["entry"] = [{k: v for k, v in e.items() if k != "resource"} if isinstance(e, dict) else e for e in entries]
    structure_problems(get_fhir_model_class("Bundle"), shell, "", problems)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "resource" not in entry:
            continue
        resource, at = entry["resource"], pointer("entry", i, "resource")
        kind = resource.get("resourceType") if isinstance(resource, dict) else None
        if not isinstance(kind, str):
            problems.append((at, "a resource must be an object with a resourceType"))
            continue
        try:
            model = get_fhir_model_class(kind)
        except (ValueError, KeyError):
            problems.append((at + "/resourceType", f"{kind!r} is not a FHIR R4 resource type"))
            continue
        structure_problems(model, resource, at, problems)
    if problems:
        raise InputError(problems, source)


def structure_problems(model, data, at: str, problems: list) -> None:
    from pydantic import ValidationError

    try:
        model.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors():
            loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
            where = at + (pointer(*loc) if loc else "")
            message = "unknown element" if err["type"] == "extra_forbidden" else err["msg"][:1].lower() + err["msg"][1:]
            problems.append((where, f"not valid FHIR R4: {message}"))
    except (KeyError, ValueError, TypeError) as exc:  # fhir.resources raises these for some shapes
        problems.append((at, f"not valid FHIR R4: {exc}"))
    except RecursionError:
        problems.append((at, "not valid FHIR R4: nested too deeply"))


@functools.lru_cache(maxsize=None)
def field_shape(path: tuple):
    """'list', 'scalar' or None (no such field) for a case/v1 field path, from the case model."""
    model = Case
    for n, name in enumerate(path):
        fields = {("schema" if k == "schema_" else k): f for k, f in model.model_fields.items()}
        if name not in fields:
            return None
        annotation = fields[name].annotation
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if typing.get_origin(annotation) is typing.Union and len(args) == 1:
            annotation = args[0]
        last = n == len(path) - 1
        if typing.get_origin(annotation) is list:
            inner = typing.get_args(annotation)[0]
            if last:
                return "list"
            if isinstance(inner, type) and issubclass(inner, BaseModel):
                model = inner
                continue
            return None
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if last:
                return None
            model = annotation
            continue
        return "scalar" if last else None
    return None


class _Reader:
    def __init__(self, doc: dict, kb, source: str):
        self.doc, self.kb, self.source = doc, kb, source
        self.problems = []
        self.document = {"schema": CASE_SCHEMA}
        self.pointers = {"": "", "/schema": "/resourceType"}
        self.stated = set()          # case pointers a case fact stated
        self.entries = []            # (pointer, resource)
        self.by_ref = {}
        for i, entry in enumerate(doc.get("entry", []) or []):
            resource = entry.get("resource") if isinstance(entry, dict) else None
            if not isinstance(resource, dict):
                continue
            at = pointer("entry", i, "resource")
            self.entries.append((at, resource))
            if resource.get("id"):
                self.by_ref[f"{resource['resourceType']}/{resource['id']}"] = (at, resource)
            if entry.get("fullUrl"):
                self.by_ref[entry["fullUrl"]] = (at, resource)
        facts = self.kb.values(FHIR_CASE_FACT, None, None, None)
        self.fact_codes = {code: where for code, where, _element in facts}

    # --- helpers -------------------------------------------------------------------

    def problem(self, at: str, message: str) -> None:
        self.problems.append((at, message))

    def of_type(self, kind: str) -> list:
        return [(at, r) for at, r in self.entries if r.get("resourceType") == kind]

    def resolve(self, ref, at: str, kinds=None):
        """The (pointer, resource) a Reference names inside the Bundle, or None with a problem."""
        target = ref.get("reference") if isinstance(ref, dict) else None
        if not target:
            return None
        found = self.by_ref.get(target)
        if found is None:
            self.problem(at + "/reference", f"reference {target!r} names no resource in the Bundle")
            return None
        if kinds and found[1].get("resourceType") not in kinds:
            self.problem(at + "/reference", f"reference {target!r} should name a {' or '.join(kinds)}")
            return None
        return found

    def put(self, path: tuple, value, at: str) -> None:
        """Set a case field (a list field gains one value) and remember where it came from."""
        node = self.document
        for part in path[:-1]:
            node = node.setdefault(part, {})
        name = path[-1]
        if field_shape(path) == "list":
            items = node.setdefault(name, [])
            self.pointers.setdefault(pointer(*path), at)
            self.pointers[pointer(*path, len(items))] = at
            items.append(value)
            return
        node[name] = value
        self.pointers[pointer(*path)] = at

    def has(self, path: tuple) -> bool:
        node = self.document
        for part in path:
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True

    def codes(self, concept, at: str, systems) -> list:
        """(code, pointer) of the codings of a CodeableConcept in the given systems."""
        out = []
        for j, coding in enumerate((concept or {}).get("coding") or []):
            if coding.get("system") in systems and coding.get("code"):
                out.append((coding["code"], pointer_join(at, "coding", j, "code")))
        return out

    def billing_code(self, concept, at: str):
        found = self.codes(concept, at, CPT_SYSTEMS + HCPCS_SYSTEMS)
        if not found:
            self.problem(at, "no CPT or HCPCS coding: cannot tell which IONM service this line bills")
            return None
        if len({c for c, _a in found}) > 1:
            self.problem(at, f"several CPT/HCPCS codes ({', '.join(c for c, _a in found)}): one line bills one code")
            return None
        return found[0]

    def value(self, holder: dict, at: str):
        """(value, pointer) of an element's value[x], read as a case-file value."""
        keys = [k for k in holder if k.startswith("value") and k != "valueReference"]
        if not keys:
            return None
        key = keys[0]
        raw, where = holder[key], pointer_join(at, key)
        if key == "valueQuantity":
            raw, where = raw.get("value"), pointer_join(where, "value")
        if key == "valueCodeableConcept":
            levels = [(lvl, a) for code, a in self.codes(raw, where, (SNOMED_SYSTEM,))
                      for _c, lvl in self.kb.values(FHIR_SNOMED_VERTEBRA, code, None)]
            if levels:
                return levels[0]
            facts = self.codes(raw, where, (CASE_FACT_SYSTEM,))
            if facts:
                return facts[0]
            self.problem(where, "a coded value must be a SNOMED CT vertebra or a code of " + CASE_FACT_SYSTEM)
            return None
        if isinstance(raw, float) and raw.is_integer():
            raw = int(raw)
        return raw, where

    # --- case facts from the project's CodeSystem ----------------------------------------

    def fact_code(self, concept, at: str):
        found = self.codes(concept, at, (CASE_FACT_SYSTEM,))
        if not found:
            return None
        code, where = found[0]
        if code not in self.fact_codes:
            self.problem(where, f"{code!r} is not a code of {CASE_FACT_SYSTEM}; known: {', '.join(sorted(self.fact_codes))}")
            return None
        return code, where

    def case_fact(self, code: str, code_at: str, holder: dict, at: str, line: Optional[int] = None) -> None:
        where = self.fact_codes[code]
        if where == "core":
            self.problem(code_at, f"{code} is read from the core FHIR element, not from a case fact")
            return
        if where == "component":
            self.problem(code_at, f"{code} belongs inside a history Observation's components")
            return
        if code == "history":
            self.history(holder, at)
            return
        got = self.value(holder, at)
        if got is None:
            self.problem(at, f"the case fact {code} has no value[x]")
            return
        value, value_at = got
        if where == "line_fact":
            if line is None:
                self.problem(code_at, f"{code} is about one IONM line: name the line (Observation.focus or "
                                      "Claim.item.informationSequence)")
                return
            path = ("services", line, code.split(".", 1)[1])
            earlier = [v for p, v, _a in self.line_facts if p == path]
            if earlier:
                if earlier[0] != value:
                    self.problem(value_at, f"{code} is stated twice for one line with different values")
                return
        else:
            path = tuple(code.split("."))
            shape = field_shape(path)
            if shape is None:
                self.problem(code_at, f"{code} is not a field of case file v1 in this version of ionm-logic")
                return
            if shape == "scalar" and pointer(*path) in self.stated:
                first = self.pointers[pointer(*path)]
                if self._get(path) != value:
                    self.problem(value_at, f"{code} is stated twice with different values (first at {first})")
                return
        self.stated.add(pointer(*path))
        if where == "line_fact":
            self.line_facts.append((path, value, value_at))
        else:
            self.put(path, value, value_at)

    def _get(self, path):
        node = self.document
        for part in path:
            node = node[part]
        return node

    def history(self, obs: dict, at: str) -> None:
        entry, entry_at = {}, {}
        for k, comp in enumerate(obs.get("component") or []):
            comp_at = pointer_join(at, "component", k)
            found = self.fact_code(comp.get("code"), pointer_join(comp_at, "code"))
            if found is None:
                self.problem(pointer_join(comp_at, "code"), f"a history component needs a code of {CASE_FACT_SYSTEM}")
                continue
            code, _code_at = found
            if self.fact_codes[code] != "component":
                self.problem(pointer_join(comp_at, "code"), f"{code} is not a history component")
                continue
            got = self.value(comp, comp_at)
            if got is None:
                self.problem(comp_at, f"the history component {code} has no value[x]")
                continue
            name = code.split(".", 1)[1]
            if name == "levels":
                entry.setdefault("levels", []).append(got[0])
                entry_at.setdefault("levels", []).append(got[1])
            else:
                entry[name], entry_at[name] = got
        if "procedure" not in entry:
            self.problem(at + "/component", "a history Observation needs a history.procedure component")
            return
        h = len(self.document.get("history", []))
        self.put(("history",), entry, at)
        for name, where in entry_at.items():
            if isinstance(where, list):
                for i, w in enumerate(where):
                    self.pointers[pointer("history", h, name, i)] = w
                self.pointers[pointer("history", h, name)] = where[0]
            else:
                self.pointers[pointer("history", h, name)] = where

    def observations(self, line_of_order: dict) -> None:
        for at, obs in self.of_type("Observation"):
            found = self.fact_code(obs.get("code"), at + "/code")
            if found is None:
                continue
            code, code_at = found
            line = None
            for j, focus in enumerate(obs.get("focus") or []):
                target = self.resolve(focus, pointer_join(at, "focus", j))
                if target is not None:
                    line = line_of_order.get(target[0])
                    if line is None:
                        self.problem(pointer_join(at, "focus", j), "the focus of a case-fact Observation must be an IONM order")
            self.case_fact(code, code_at, obs, at, line)

    # --- the parts every Bundle form shares -------------------------------------------------

    def surgical(self, resources: list, codes=()) -> None:
        """procedure.* from the surgical Procedures / ServiceRequests (and a Claim's procedure codes)."""
        if resources:
            self.pointers.setdefault("/procedure", resources[0][0])
        codes = list(codes)
        for at, res in resources:
            concept = res.get("code") or {}
            codes += self.codes(concept, at + "/code", CPT_SYSTEMS)
            if concept.get("text") and not self.has(("procedure", "description")):
                self.put(("procedure", "description"), concept["text"], at + "/code/text")
        self.procedure_codes(codes)
        for at, res in resources:
            self.body_sites(res, at)

    def procedure_codes(self, codes: list) -> None:
        kinds = []
        for code, at in codes:
            self.put(("procedure", "codes"), code, at)
            for _c, kind, region in self.kb.values(FHIR_SURGICAL_CODE_PROCEDURE, code, None, None):
                kinds.append((code, kind, region, at))
        for field_name, index in (("kind", 1), ("region", 2)):
            if pointer("procedure", field_name) in self.stated:
                continue
            values = sorted({k[index] for k in kinds})
            if len(values) == 1:
                self.put(("procedure", field_name), values[0], kinds[0][3])
            elif len(values) > 1:
                self.problem(kinds[0][3], f"the surgical codes map to different procedure {field_name}s "
                                          f"({', '.join(values)}): state procedure.{field_name} with a case fact")
            else:
                shown = ", ".join(c for c, _a in codes) or "none"
                self.problem(self.pointers.get("/procedure", ""),
                             f"no surgical code maps to a procedure {field_name} (surgical CPT codes: {shown}): state "
                             f"procedure.{field_name} with a case fact ({CASE_FACT_SYSTEM})")
        if pointer("procedure", "approaches") not in self.stated:
            seen = set()
            for code, at in codes:
                for _c, approach in self.kb.values(FHIR_SURGICAL_CODE_APPROACH, code, None):
                    if approach not in seen:
                        seen.add(approach)
                        self.put(("procedure", "approaches"), approach, at)

    def body_sites(self, res: dict, at: str) -> None:
        for j, site in enumerate(res.get("bodySite") or []):
            site_at = pointer_join(at, "bodySite", j)
            snomed = self.codes(site, site_at, (SNOMED_SYSTEM,))
            if not snomed:
                self.problem(site_at, "a bodySite needs a SNOMED CT vertebra coding")
                continue
            code, code_at = snomed[0]
            level = self.kb.values(FHIR_SNOMED_VERTEBRA, code, None)
            if not level:
                self.problem(code_at, f"SNOMED CT {code} is not a vertebra ionm-logic knows (rules/fhir/fhir-vertebrae.dl)")
                continue
            if pointer("procedure", "levels") in self.stated:
                continue
            if level[0][1] not in self.document.get("procedure", {}).get("levels", []):
                self.put(("procedure", "levels"), level[0][1], code_at)

    def diagnoses(self, concepts: list) -> None:
        seen = {d["code"] for d in self.document.get("diagnoses", [])}
        for concept, at in concepts:
            for j, coding in enumerate((concept or {}).get("coding") or []):
                if coding.get("system") != ICD10CM_SYSTEM or not coding.get("code"):
                    continue
                if coding["code"] in seen:
                    continue
                seen.add(coding["code"])
                entry = {"code": coding["code"]}
                text = coding.get("display") or (concept or {}).get("text")
                if text:
                    entry["text"] = text
                i = len(self.document.get("diagnoses", []))
                self.put(("diagnoses",), entry, pointer_join(at, "coding", j))
                self.pointers[pointer("diagnoses", i, "code")] = pointer_join(at, "coding", j, "code")

    def patient(self, found, date) -> None:
        if found is None:
            return
        at, patient = found
        if patient.get("gender"):
            self.put(("patient", "sex"), {"male": "M", "female": "F"}.get(patient["gender"], patient["gender"]),
                     at + "/gender")
        birth = patient.get("birthDate")
        if birth and date is not None:
            try:
                born = datetime.date.fromisoformat(birth if len(birth) == 10 else birth[:4] + "-07-01")
            except ValueError:
                self.problem(at + "/birthDate", f"birthDate {birth!r} is not a date")
                return
            age = date.year - born.year - ((date.month, date.day) < (born.month, born.day))
            self.put(("patient", "age"), age, at + "/birthDate")

    def coverage(self, found):
        if found is None:
            return None
        at, coverage = found
        for j, payor in enumerate(coverage.get("payor") or []):
            payor_at = pointer_join(at, "payor", j)
            identifiers = []
            if isinstance(payor.get("identifier"), dict):
                identifiers.append((payor["identifier"], payor_at + "/identifier"))
            org = self.resolve(payor, payor_at, ("Organization",)) if payor.get("reference") else None
            if org is not None:
                identifiers += [(ident, pointer_join(org[0], "identifier", k))
                                for k, ident in enumerate(org[1].get("identifier") or [])]
            for ident, ident_at in identifiers:
                packs = self.kb.values(FHIR_PAYER_IDENTIFIER, ident.get("system"), ident.get("value"), None)
                if packs:
                    self.put(("payer",), packs[0][2], ident_at + "/value")
                    return f"Coverage/{coverage.get('id')}"
            shown = ", ".join(f"{i.get('system')}|{i.get('value')}" for i, _a in identifiers) or "no identifier"
            self.unknown_payer = (payor_at, f"unknown payer ({shown}): no policy pack is mapped to it "
                                            "(rules/fhir/fhir-payers.dl)")
        if not coverage.get("payor"):
            self.problem(at, "the Coverage names no payor")
        return f"Coverage/{coverage.get('id')}"

    def date_from(self, res: dict, at: str, keys) -> Optional[tuple]:
        for key in keys:
            value = res.get(key)
            where = pointer_join(at, key)
            if isinstance(value, dict):
                value, where = value.get("start"), pointer_join(where, "start")
            if isinstance(value, str) and len(value) >= 10:
                return value[:10], where
        return None


def pointer_join(base: str, *parts) -> str:
    return base + pointer(*parts)


def read_bundle(doc: dict, kb, source: str = "", payer_given: bool = False) -> FhirCase:
    """The case a Bundle describes. Raises InputError naming Bundle pointers. With `payer_given`
    (--payer), a Bundle whose payer maps to no pack, or that has no Coverage, is still read."""
    _validate_structure(doc, source)
    reader = _Reader(doc, kb, source)
    reader.line_facts = []
    reader.unknown_payer = None
    claims = [(at, r) for at, r in reader.of_type("Claim") if r.get("use") in CLAIM_USES]
    if len(claims) > 1:
        raise InputError([(claims[1][0], "a Bundle holds one Claim (or preauthorization) to decide")], source)
    if claims:
        form, lines, coverage = "claim", *_read_claim(reader, *claims[0])
    else:
        form, lines, coverage = "order", *_read_orders(reader)
    for (_services, line, name), value, at in reader.line_facts:
        reader.document["services"][line][name] = value
        reader.pointers[pointer("services", line, name)] = at
    if not payer_given and not reader.has(("payer",)):
        reader.problem(*(reader.unknown_payer or ("/entry", "no Coverage with a payor: the payer decides the policy "
                                                           "pack (or pass --payer)")))
    if not reader.has(("case_id",)):
        ident = doc.get("identifier") if isinstance(doc.get("identifier"), dict) else {}
        if ident.get("value"):
            reader.put(("case_id",), ident["value"], "/identifier/value")
        elif doc.get("id"):
            reader.put(("case_id",), doc["id"], "/id")
        else:
            reader.problem("", "the Bundle has neither identifier.value nor id: no case id")
    if reader.problems:
        raise InputError(reader.problems, source)
    document = _ordered(reader.document)
    try:
        case = parse_case(json.dumps(document))
    except InputError as exc:
        partial = FhirCase(doc, document, None, reader.pointers, form, lines, coverage, source)
        raise exc.relocated(partial.locate, source) from None
    return FhirCase(doc, document, case, reader.pointers, form, lines, coverage, source)


_ORDER = ("schema", "case_id", "payer", "date_of_service", "patient", "procedure", "diagnoses", "clinical",
          "history", "monitoring", "services")


def _ordered(document: dict) -> dict:
    return {k: document[k] for k in _ORDER if k in document} | {k: v for k, v in document.items() if k not in _ORDER}


def _read_claim(reader: _Reader, at: str, claim: dict):
    lines, service_date = [], None
    sequence_to_line = {}
    for j, item in enumerate(claim.get("item") or []):
        item_at = pointer_join(at, "item", j)
        lines.append(Line(item_at, None, None))
        _read_line(reader, len(lines) - 1, item, item_at, "productOrService", "quantity")
        for seq in item.get("informationSequence") or []:
            sequence_to_line.setdefault(seq, []).append(len(lines) - 1)
        service_date = service_date or reader.date_from(item, item_at, ("servicedDate", "servicedPeriod"))
    if not lines:
        reader.problem(at + "/item", "the Claim has no items: no IONM line to decide")
    # Case facts: supportingInfo with a case-fact code (value[x], or a reference to an Observation).
    referenced = set()
    for k, info in enumerate(claim.get("supportingInfo") or []):
        info_at = pointer_join(at, "supportingInfo", k)
        found = reader.fact_code(info.get("code"), info_at + "/code")
        if found is None:
            continue
        code, code_at = found
        holder, holder_at = info, info_at
        if info.get("valueReference"):
            target = reader.resolve(info["valueReference"], info_at + "/valueReference", ("Observation",))
            if target is None:
                continue
            holder_at, holder = target
            referenced.add(holder_at)
        targets = sequence_to_line.get(info.get("sequence"), [None])
        for line in targets:
            reader.case_fact(code, code_at, holder, holder_at, line)
    for obs_at, obs in reader.of_type("Observation"):
        if obs_at not in referenced and reader.fact_code(obs.get("code"), obs_at + "/code"):
            reader.problem(obs_at, "a case-fact Observation in a Claim Bundle must be named by a Claim.supportingInfo")
    # The surgical procedure: Claim.procedure (codes, or references to Procedures with body sites).
    surgical, codes = [], []
    for k, proc in enumerate(claim.get("procedure") or []):
        proc_at = pointer_join(at, "procedure", k)
        if proc.get("procedureReference"):
            target = reader.resolve(proc["procedureReference"], proc_at + "/procedureReference", ("Procedure",))
            if target is not None:
                surgical.append(target)
        else:
            codes += reader.codes(proc.get("procedureCodeableConcept"), proc_at + "/procedureCodeableConcept",
                                  CPT_SYSTEMS)
    if not surgical and not codes:
        surgical = reader.of_type("Procedure")
    if codes:
        reader.pointers.setdefault("/procedure", pointer_join(at, "procedure"))
    reader.surgical(surgical, codes)
    reader.diagnoses([(d.get("diagnosisCodeableConcept"), pointer_join(at, "diagnosis", k, "diagnosisCodeableConcept"))
                      for k, d in enumerate(claim.get("diagnosis") or []) if d.get("diagnosisCodeableConcept")]
                     + [(t[1].get("code"), t[0] + "/code")
                        for k, d in enumerate(claim.get("diagnosis") or []) if d.get("diagnosisReference")
                        for t in [reader.resolve(d["diagnosisReference"], pointer_join(at, "diagnosis", k, "diagnosisReference"),
                                                 ("Condition",))] if t])
    date = service_date or reader.date_from(claim, at, ("billablePeriod",))
    if date is None and surgical:
        date = reader.date_from(surgical[0][1], surgical[0][0], ("performedDateTime", "performedPeriod"))
    day = _set_date(reader, date, at)
    reader.patient(reader.resolve(claim.get("patient"), at + "/patient", ("Patient",)), day)
    coverage = None
    insurance = claim.get("insurance") or []
    chosen = [i for i in insurance if i.get("focal")] or insurance
    if chosen:
        k = insurance.index(chosen[0])
        coverage = reader.coverage(reader.resolve(chosen[0].get("coverage"), pointer_join(at, "insurance", k, "coverage"),
                                                  ("Coverage",)))
    return lines, coverage


def _read_orders(reader: _Reader):
    requests = reader.of_type("ServiceRequest")
    if not requests:
        raise InputError([("/entry", "the Bundle holds no Claim (use claim or preauthorization) and no ServiceRequest: "
                                     "nothing to decide")], reader.source)
    based_on = set()
    for at, sr in requests:
        for k, ref in enumerate(sr.get("basedOn") or []):
            target = reader.resolve(ref, pointer_join(at, "basedOn", k))
            if target is not None:
                based_on.add(target[0])

    def is_ionm(at, sr):
        if at in based_on:
            return False
        if sr.get("basedOn"):
            return True
        return any(reader.kb.values(KNOWN_CODE, code) for code, _a in
                   reader.codes(sr.get("code"), at + "/code", CPT_SYSTEMS + HCPCS_SYSTEMS))

    orders = [(at, sr) for at, sr in requests if is_ionm(at, sr)]
    surgical = [(at, sr) for at, sr in requests if not is_ionm(at, sr)] + reader.of_type("Procedure")
    if not orders:
        raise InputError([("/entry", "no ServiceRequest in the Bundle is an IONM order (a known IONM code, or "
                                     "basedOn the surgical request)")], reader.source)
    lines, line_of_order, date = [], {}, None
    for at, sr in orders:
        line_of_order[at] = len(lines)
        lines.append(Line(at, sr, f"ServiceRequest/{sr.get('id')}"))
        _read_line(reader, len(lines) - 1, sr, at, "code", "quantityQuantity")
        date = date or reader.date_from(sr, at, ("occurrenceDateTime", "occurrencePeriod"))
    reader.observations(line_of_order)
    reader.surgical(surgical)
    for at, res in surgical:
        date = reader.date_from(res, at, ("occurrenceDateTime", "occurrencePeriod", "performedDateTime",
                                          "performedPeriod")) or date
        if date:
            break
    concepts = [(rc, pointer_join(at, "reasonCode", k)) for at, sr in orders + surgical
                for k, rc in enumerate(sr.get("reasonCode") or [])]
    concepts += [(c.get("code"), at + "/code") for at, c in reader.of_type("Condition")]
    reader.diagnoses(concepts)
    day = _set_date(reader, date, orders[0][0])
    subject = orders[0][1].get("subject")
    patient = reader.resolve(subject, orders[0][0] + "/subject", ("Patient",)) if subject else None
    if patient is None and len(reader.of_type("Patient")) == 1:
        patient = reader.of_type("Patient")[0]
    reader.patient(patient, day)
    coverage = None
    for at, sr in orders:
        for k, ref in enumerate(sr.get("insurance") or []):
            coverage = coverage or reader.resolve(ref, pointer_join(at, "insurance", k), ("Coverage",))
    coverages = reader.of_type("Coverage")
    if coverage is None and len(coverages) > 1:
        reader.problem(coverages[1][0], "several Coverages and no ServiceRequest.insurance naming one: which payer "
                                        "decides is not said")
    elif coverage is None and coverages:
        coverage = coverages[0]
    return lines, reader.coverage(coverage)


def _read_line(reader: _Reader, index: int, res: dict, at: str, code_key: str, quantity_key: str) -> None:
    reader.pointers[pointer("services", index)] = at
    found = reader.billing_code(res.get(code_key), pointer_join(at, code_key))
    service = {"code": found[0] if found else ""}
    reader.document.setdefault("services", []).append(service)
    if found:
        reader.pointers[pointer("services", index, "code")] = found[1]
    quantity = res.get(quantity_key)
    if isinstance(quantity, dict) and "value" in quantity:
        value = quantity["value"]
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        service["units"] = value
        reader.pointers[pointer("services", index, "units")] = pointer_join(at, quantity_key, "value")


def _set_date(reader: _Reader, date, at: str):
    if date is None:
        reader.problem(at, "no date of service: Claim.item.servicedDate, Claim.billablePeriod, "
                           "ServiceRequest.occurrence[x] or Procedure.performed[x]")
        return None
    value, where = date
    reader.put(("date_of_service",), value, where)
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        return None
