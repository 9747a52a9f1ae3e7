"""Read any input — a case file v1, a FHIR R4 Bundle, plus QuestionnaireResponse answers — as one case
whose every field knows the pointer it came from.

A case file's pointers are its own; a Bundle's fields point into the Bundle; an answered field
points into the QuestionnaireResponse (`QR-FILE#/item/0/answer/0/valueBoolean`). Proof case
leaves are built with `locate` and error messages rewritten with it, so both cite the user's own
document.
fhir.resources is imported only when the input is FHIR.
"""
from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from typing import Optional

from .case import Case, load_json, parse_case
from .errors import InputError, pointer


@dataclass
class Input:
    case: Case
    document: dict                      # the case/v1 document the case was validated from
    source: str = ""
    fhir: Optional[object] = None       # fhir.read.FhirCase for a Bundle
    answered: dict = field(default_factory=dict)  # case pointer -> "QR#/pointer"

    def locate(self, case_pointer: str) -> str:
        if case_pointer in self.answered:
            return self.answered[case_pointer]
        return self.fhir.locate(case_pointer) if self.fhir is not None else case_pointer

    @property
    def located(self) -> bool:
        return self.fhir is not None or bool(self.answered)

    def rewrite_error(self, exc: InputError) -> InputError:
        return exc.relocated(self.locate, self.source) if self.located else exc


def _loads(raw, source: str = ""):
    """The JSON document of raw input (bytes or str), or InputError as the case parser words it."""
    return load_json(raw, source, what="input")


def parse_input(raw, kb, source: str = "", payer_given: bool = False) -> Input:
    """A case file v1 or a FHIR Bundle (told apart by resourceType), validated. `payer_given`:
    the payer comes from elsewhere (--payer), so a Bundle need not name a known one."""
    doc = _loads(raw, source)
    if isinstance(doc, dict) and "resourceType" in doc:
        if doc.get("resourceType") != "Bundle":
            raise InputError([("/resourceType", f"a FHIR input must be a Bundle, not a {doc.get('resourceType')!r}")],
                             source)
        from .fhir.read import read_bundle

        fhir_case = read_bundle(doc, kb, source, payer_given)
        return Input(fhir_case.case, fhir_case.document, source, fhir_case)
    case = parse_case(raw, source)
    return Input(case, doc, source)


def apply_answers(inp: Input, raw, qr_source: str) -> Input:
    """The input with a QuestionnaireResponse's answers filled in; each answer points into the QR."""
    qr = _loads(raw, qr_source)
    if not isinstance(qr, dict) or qr.get("resourceType") != "QuestionnaireResponse":
        raise InputError([("/resourceType", "expected a FHIR QuestionnaireResponse")], qr_source)
    from fhir.resources.R4B import get_fhir_model_class

    from .fhir.read import field_shape, structure_problems

    problems = []
    structure_problems(get_fhir_model_class("QuestionnaireResponse"), qr, "", problems)
    if problems:
        raise InputError(problems, qr_source)
    document = copy.deepcopy(inp.document)
    answered = dict(inp.answered)
    for k, item in enumerate(qr.get("item") or []):
        link = item.get("linkId", "")
        at = pointer("item", k)
        path = tuple(part for part in link.split("/")[1:]) if link.startswith("/") else ()
        if not path or field_shape(path) != "scalar":
            problems.append((at + "/linkId", f"linkId {link!r} is not the JSON pointer of a case field"))
            continue
        answers = item.get("answer") or []
        if not answers:
            continue
        if len(answers) > 1:
            problems.append((at + "/answer", "one answer per question"))
            continue
        keys = [key for key in answers[0] if key.startswith("value")]
        if not keys:
            continue
        value = answers[0][keys[0]]
        if keys[0] == "valueCoding":
            value = value.get("code")
        node = document
        for part in path[:-1]:
            node = node.setdefault(part, {})
        if node.get(path[-1]) is not None:
            problems.append((at + "/linkId", f"{link} is already documented in the case ({inp.locate(link)}); "
                                             "an answer fills only what is undocumented"))
            continue
        node[path[-1]] = value
        answered[link] = f"{qr_source}#{pointer('item', k, 'answer', 0, keys[0])}"
    if problems:
        raise InputError(problems, qr_source)
    result = Input(inp.case, document, inp.source, inp.fhir, answered)
    try:
        result.case = parse_case(json.dumps(document), inp.source)
    except InputError as exc:
        raise result.rewrite_error(exc) from None
    return result
