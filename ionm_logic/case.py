"""Read and validate case files (ionm-logic/case/v1) and turn them into pointed case facts.

The model types the boundary only: which values each field may take that the rules define
(levels, kinds, regions, approaches, devices, modalities) is asked of the knowledge base.
`pose` puts a validated case to the rules under one policy version (a PosedCase): its facts,
their pointers, its lines, and how documenting an undocumented field changes the facts.
"""
from __future__ import annotations

import datetime
import json
import re
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Annotated, List, Literal, Optional, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints, ValidationError

from . import policy as policies
from .errors import InputError, pointer, quoted
from .lang import contract as c

CASE_SCHEMA = "ionm-logic/case/v1"
# The value standing for the case in every case fact (the first argument of case predicates).
CASE_KEY = "case"

# Input limits: beyond them a case is an input error naming the field, so that no one field can
# make a case cost more than its size (README, "Input limits"). Generous for any real case.
LIMITS = {
    "record_bytes": 1_000_000,   # one case file, or one JSON-lines record
    "depth": 16,                 # nesting of objects and lists (a case file uses 4)
    "code_chars": 64,            # a service, surgical or diagnosis code (ICD-10-CM is 8 at most)
    "name_chars": 200,           # case_id, payer and every vocabulary value (kind, level, ...)
    "text_chars": 10_000,        # a free-text field (description, diagnosis text, note, ...)
    "services": 100,             # service lines per case
    "list_items": 100,           # any other list: codes, levels, diagnoses, history, interventions
}

T = TypeVar("T")


def _null_is_empty(value):
    # Table and SQL exports write null for an empty list; null means "none documented".
    return [] if value is None else value


# A list field: null reads as empty, and it holds at most `list_items` values.
NullableList = Annotated[List[T], BeforeValidator(_null_is_empty), Field(max_length=LIMITS["list_items"])]
Code = Annotated[str, StringConstraints(min_length=1, max_length=LIMITS["code_chars"])]
Name = Annotated[str, StringConstraints(max_length=LIMITS["name_chars"])]
Text = Annotated[str, StringConstraints(max_length=LIMITS["text_chars"])]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class Patient(_Strict):
    age: Optional[int] = Field(default=None, ge=0, le=150)
    sex: Optional[Name] = None


class Procedure(_Strict):
    description: Optional[Text] = None
    codes: NullableList[Code] = Field(default_factory=list)
    kind: Name
    region: Name
    approaches: NullableList[Name] = Field(default_factory=list)
    levels: NullableList[Name] = Field(default_factory=list)
    instrumentation: NullableList[Name] = Field(default_factory=list)
    near_eloquent_cortex: Optional[bool] = None
    cranial_nerve_tumor: Optional[bool] = None
    high_risk_thyroid: Optional[bool] = None
    anesthesia_minutes: Optional[int] = Field(default=None, ge=1)


class Diagnosis(_Strict):
    code: Code
    text: Optional[Text] = None


class Clinical(_Strict):
    myelopathy: Optional[bool] = None
    radiculopathy: Optional[bool] = None
    neurological_deficit: Optional[bool] = None
    tethered_cord: Optional[bool] = None
    conus_level: Optional[Name] = None


class HistoryEntry(_Strict):
    procedure: Name
    levels: NullableList[Name] = Field(default_factory=list)
    outcome: Optional[Name] = None


class Professional(_Strict):
    member_of_surgical_team: Optional[bool] = None
    real_time: Optional[bool] = None
    concurrent_cases: Optional[int] = Field(default=None, ge=1)
    exclusive_minutes: Optional[int] = Field(default=None, ge=1)


class Report(_Strict):
    findings: Optional[Literal["normal", "changes"]] = None
    interventions: NullableList[Text] = Field(default_factory=list)


class Monitoring(_Strict):
    setting: Optional[Literal["in_room", "remote"]] = None
    technologist_in_room: Optional[bool] = None
    minutes: Optional[int] = Field(default=None, ge=1)
    professional: Professional = Field(default_factory=Professional)
    report: Report = Field(default_factory=Report)
    note: Optional[Text] = None


class Service(_Strict):
    code: Code
    units: int = Field(default=1, ge=1)
    modality: Optional[Name] = None


class Case(_Strict):
    """A surgical case with the IONM service lines under review (case file v1)."""

    schema_: Literal["ionm-logic/case/v1"] = Field(alias="schema")
    case_id: Name
    payer: Optional[Name] = None
    date_of_service: datetime.date
    patient: Optional[Patient] = None
    procedure: Procedure
    diagnoses: NullableList[Diagnosis] = Field(default_factory=list)
    clinical: Clinical = Field(default_factory=Clinical)
    history: NullableList[HistoryEntry] = Field(default_factory=list)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    services: Annotated[List[Service], BeforeValidator(_null_is_empty),
                        Field(min_length=1, max_length=LIMITS["services"])]

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


# What each field means, as design.md's case-file table says: `ionm-logic schema` publishes them.
FIELD_DESCRIPTIONS = {
    "schema": "The case file format: \"ionm-logic/case/v1\"; other values are rejected.",
    "case_id": "The case's identifier, echoed verbatim, never interpreted.",
    "payer": "Policy pack id (e.g. commercial-reference); may be omitted when --payer is given.",
    "date_of_service": "ISO date; selects the policy version in force (--as-of overrides).",
    "patient": "The patient: age and sex.",
    "patient.age": "Age in years (an integer, 0 or more).",
    "patient.sex": "Sex as documented.",
    "procedure": "The surgical procedure the monitoring accompanied.",
    "procedure.description": "Free text, shown only.",
    "procedure.codes": "Surgical CPT codes (e.g. 22558 ALIF, 22630 PLIF, 35301 carotid endarterectomy); "
                       "facts about them live in rules/.",
    "procedure.kind": "The kind of procedure, from the vocabulary in rules/ (e.g. fusion, decompression).",
    "procedure.region": "Where the procedure is: spine, cranial, vascular, neck or peripheral.",
    "procedure.approaches": "Surgical approaches: anterior, posterior, lateral.",
    "procedure.levels": "Vertebral levels operated, e.g. [\"L5\", \"S1\"]; required for a spinal procedure.",
    "procedure.instrumentation": "Instrumentation placed: pedicle_screws, interbody_device, plate, rods.",
    "procedure.near_eloquent_cortex": "Whether the resection is near eloquent (motor) cortex and needs mapping "
                                      "(null: not documented).",
    "procedure.cranial_nerve_tumor": "Whether the tumor involves cranial nerves (null: not documented).",
    "procedure.high_risk_thyroid": "Whether the thyroid surgery is high risk for the recurrent laryngeal nerve "
                                   "(null: not documented).",
    "procedure.anesthesia_minutes": "Minutes of anesthesia (an integer, 1 or more; null: not documented).",
    "diagnoses": "ICD-10-CM diagnoses of the case.",
    "diagnoses.code": "ICD-10-CM code.",
    "diagnoses.text": "The diagnosis in words, shown only.",
    "clinical": "Clinical findings; true, false, or null (not documented, which differs from false).",
    "clinical.myelopathy": "Myelopathy documented (true/false) or not documented (null).",
    "clinical.radiculopathy": "Radiculopathy documented (true/false) or not documented (null).",
    "clinical.neurological_deficit": "A neurological deficit documented (true/false) or not documented (null).",
    "clinical.tethered_cord": "A tethered spinal cord documented (true/false) or not documented (null).",
    "clinical.conus_level": "The level of the conus medullaris on imaging, or null (the anatomy's default).",
    "history": "Prior surgery.",
    "history.procedure": "The prior procedure, e.g. microdiscectomy.",
    "history.levels": "Vertebral levels of the prior procedure.",
    "history.outcome": "The outcome of the prior procedure, from the vocabulary in rules/ "
                       "(e.g. radicular_symptoms_resolved).",
    "monitoring": "How the monitoring was done and what it found.",
    "monitoring.setting": "Where the interpreting professional was: in_room or remote.",
    "monitoring.technologist_in_room": "Whether a technologist was in the operating room (null: not documented).",
    "monitoring.professional": "The interpreting professional.",
    "monitoring.professional.member_of_surgical_team": "Whether the interpreting professional was a member of "
                                                        "the surgical team (surgeon, assistant or anesthesiologist).",
    "monitoring.professional.real_time": "Whether interpretation was contemporaneous (real time).",
    "monitoring.professional.concurrent_cases": "Cases the interpreting professional covered at the same time "
                                                "(an integer, 1 or more; null: not documented).",
    "monitoring.report": "The monitoring report.",
    "monitoring.report.findings": "The monitoring findings: normal or changes (null: not documented).",
    "monitoring.report.interventions": "Surgical changes made because of monitoring.",
    "monitoring.note": "Free text, shown only.",
    "monitoring.minutes": "Minutes of monitoring (an integer, 1 or more; null: not documented).",
    "monitoring.professional.exclusive_minutes": "Minutes the interpreting professional gave this patient alone "
                                                 "while covering concurrent cases (null: not documented).",
    "services": "The IONM service lines under review (at least one).",
    "services.code": "The billed IONM code (CPT/HCPCS); an unknown code without a modality is undetermined.",
    "services.units": "Units billed (an integer, 1 or more; default 1).",
    "services.modality": "Picks among the modalities rules/ allows for a known code; on an unknown code, "
                         "a known modality decides the line (e.g. 95999 billed for train-of-four).",
}


def _describe(schema: dict) -> None:
    """Give every property of the schema its FIELD_DESCRIPTIONS entry, following $refs."""
    defs = schema.get("$defs", {})

    def target(node):
        ref = node.get("$ref") or next((a["$ref"] for a in node.get("anyOf", []) if "$ref" in a), None)
        if ref is None and "items" in node:
            ref = node.get("items", {}).get("$ref")
        return defs[ref.rsplit("/", 1)[1]] if ref else None

    def walk(obj, prefix):
        for name, prop in obj.get("properties", {}).items():
            path = f"{prefix}{name}"
            if path in FIELD_DESCRIPTIONS:
                prop["description"] = FIELD_DESCRIPTIONS[path]
            inner = target(prop)
            if inner is not None:
                walk(inner, path + ".")

    walk(schema, "")


def json_schema(kb=None) -> dict:
    """The JSON Schema of case files; with a knowledge base, the values its rules define (levels,
    kinds, regions, approaches, devices, modalities, payers) are listed as enums."""
    schema = Case.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = CASE_SCHEMA
    _describe(schema)
    for props in [schema["properties"]] + [d["properties"] for d in schema["$defs"].values()]:
        for name, prop in props.items():
            if prop.get("type") == "array" and name != "services":
                prop["type"] = ["array", "null"]  # null reads as an empty list
    if kb is None:
        return schema
    defs = schema["$defs"]

    def values(pred):
        return [row[0] for row in kb.values(pred, *([None] * kb.decls[pred].arity))]

    levels = [level for level, _rank in sorted(kb.values(c.LEVEL_RANK, None, None), key=lambda r: r[1])]
    proc = defs["Procedure"]["properties"]
    proc["kind"]["enum"] = values(c.PROCEDURE_KINDS)
    proc["region"]["enum"] = values(c.REGIONS)
    proc["levels"]["items"]["enum"] = levels
    proc["approaches"]["items"]["enum"] = values(c.APPROACHES)
    proc["instrumentation"]["items"]["enum"] = values(c.INSTRUMENTATION)
    defs["Clinical"]["properties"]["conus_level"]["anyOf"][0]["enum"] = levels
    defs["HistoryEntry"]["properties"]["levels"]["items"]["enum"] = levels
    defs["HistoryEntry"]["properties"]["outcome"]["anyOf"][0]["enum"] = values(c.OUTCOMES)
    defs["Service"]["properties"]["modality"]["anyOf"][0]["enum"] = values(c.MODALITY)
    schema["properties"]["payer"]["anyOf"][0]["enum"] = sorted(p for p, _t in kb.values(c.POLICY_PACK, None, None))
    return schema


_PLAIN = {
    "extra_forbidden": "unknown field",
    "missing": "required field is missing",
}


def load_json(raw, source: str = "", what: str = "case"):
    """The JSON document of raw input (bytes or str) within the record limit, or InputError
    worded for a person; `what` names the input in the size message."""
    if len(raw) > LIMITS["record_bytes"]:
        raise InputError([("", f"the {what} is longer than the limit of {LIMITS['record_bytes']:,} bytes")], source)
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError([("", f"the file is not UTF-8 text (byte {exc.start})")], source) from None
    if not raw.strip():
        raise InputError([("", "the file is empty; expected a JSON object")], source)
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise InputError([("", f"not valid JSON: {exc}")], source) from None


def parse_case(raw, source: str = "") -> Case:
    """Validate case JSON (bytes or str); raise InputError naming each bad field."""
    doc = load_json(raw, source)
    if not isinstance(doc, dict):
        raise InputError([("", f"expected a JSON object, got {type(doc).__name__}")], source)
    _check_text(doc, source)
    if "schema" in doc and doc["schema"] != CASE_SCHEMA:
        raise InputError([("/schema", f"unsupported schema {quoted(doc['schema'])}; expected {CASE_SCHEMA!r}")], source)
    try:
        return Case.model_validate_json(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = [p for p in err["loc"] if p != "schema_"] if err["loc"] != ("schema_",) else ["schema"]
            problems.append((pointer(*loc), _PLAIN.get(err["type"], err["msg"][:1].lower() + err["msg"][1:])))
        raise InputError(problems, source) from None
    except RecursionError:
        raise InputError([("", "the document is nested too deeply")], source) from None


def _check_text(doc, source: str) -> None:
    """Reject nesting deeper than the limit and strings that are not Unicode text (a lone
    surrogate such as "\\ud800" can be neither decided nor echoed): one walk, linear in size,
    and a second that names the place only when the first finds a problem."""
    limit, stack = LIMITS["depth"], [(doc, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, dict):
            if (depth >= limit and value) or any(_SURROGATE.search(key) for key in value):
                return _locate_text_problem(doc, source)
            stack.extend([(item, depth + 1) for item in value.values()])
        elif isinstance(value, list):
            if depth >= limit and value:
                return _locate_text_problem(doc, source)
            stack.extend([(item, depth + 1) for item in value])
        elif isinstance(value, str) and _SURROGATE.search(value):
            return _locate_text_problem(doc, source)


def _locate_text_problem(doc, source: str) -> None:
    """_check_text's walk that keeps each value's path, to name where the problem is."""
    stack = [(doc, (), 0)]
    while stack:
        value, path, depth = stack.pop()
        if depth > LIMITS["depth"]:
            raise InputError([(pointer(*path), f"nested more than {LIMITS['depth']} levels deep")], source)
        if isinstance(value, dict):
            for key, item in value.items():
                if _SURROGATE.search(key):
                    raise InputError([(pointer(*path), "a field name is not Unicode text (it holds a lone surrogate)")],
                                     source)
                stack.append((item, path + (key,), depth + 1))
        elif isinstance(value, list):
            stack.extend((item, path + (i,), depth + 1) for i, item in enumerate(value))
        elif isinstance(value, str) and _SURROGATE.search(value):
            raise InputError([(pointer(*path), "not Unicode text: it holds a lone surrogate "
                                               f"(\\u{ord(_SURROGATE.search(value).group()):04x})")], source)


_SURROGATE = re.compile("[\ud800-\udfff]")


def check_vocabulary(case: Case, kb, source: str = "") -> None:
    """Reject values the knowledge base does not define: levels, kinds, regions, modalities..."""
    problems = []

    def known(pred, value):
        return bool(kb.values(pred, value)) if len(kb.decls[pred].params) == 1 else bool(kb.values(pred, value, None))

    def vocabulary(pred):
        return ", ".join(str(row[0]) for row in kb.values(pred, *([None] * kb.decls[pred].arity)))

    proc = case.procedure
    if not known(c.PROCEDURE_KINDS, proc.kind):
        problems.append(("/procedure/kind", f"unknown procedure kind {quoted(proc.kind)}; known: {vocabulary(c.PROCEDURE_KINDS)}"))
    if not known(c.REGIONS, proc.region):
        problems.append(("/procedure/region", f"unknown region {quoted(proc.region)}; known: {vocabulary(c.REGIONS)}"))
    for i, approach in enumerate(proc.approaches):
        if not known(c.APPROACHES, approach):
            problems.append((pointer("procedure", "approaches", i), f"unknown approach {quoted(approach)}; known: {vocabulary(c.APPROACHES)}"))
    for i, device in enumerate(proc.instrumentation):
        if not known(c.INSTRUMENTATION, device):
            problems.append((pointer("procedure", "instrumentation", i),
                             f"unknown instrumentation {quoted(device)}; known: {vocabulary(c.INSTRUMENTATION)}"))
    levels_hint = "vertebral levels are C1-C7, T1-T12, L1-L5, S1-S5"
    for i, level in enumerate(proc.levels):
        if not known(c.LEVEL_RANK, level):
            problems.append((pointer("procedure", "levels", i), f"unknown vertebral level {quoted(level)}; {levels_hint}"))
    if proc.region == "spine" and not proc.levels:
        problems.append(("/procedure/levels", "a spinal procedure must list its operated levels"))
    if case.clinical.conus_level is not None and not known(c.LEVEL_RANK, case.clinical.conus_level):
        problems.append(("/clinical/conus_level", f"unknown vertebral level {quoted(case.clinical.conus_level)}; {levels_hint}"))
    for h, entry in enumerate(case.history):
        if entry.outcome is not None and not known(c.OUTCOMES, entry.outcome):
            problems.append((pointer("history", h, "outcome"),
                             f"unknown outcome {quoted(entry.outcome)}; known: {vocabulary(c.OUTCOMES)}"))
        for i, level in enumerate(entry.levels):
            if not known(c.LEVEL_RANK, level):
                problems.append((pointer("history", h, "levels", i), f"unknown vertebral level {quoted(level)}; {levels_hint}"))
    for i, service in enumerate(case.services):
        if service.modality is None:
            continue
        where = pointer("services", i, "modality")
        if not known(c.MODALITY, service.modality):
            problems.append((where, f"unknown modality {quoted(service.modality)}; known: {vocabulary(c.MODALITY)}"))
        elif known(c.KNOWN_CODE, service.code) and not kb.values(c.CODE_ALLOWS_MODALITY, service.code, service.modality):
            allowed = ", ".join(m for _c, m in kb.values(c.CODE_ALLOWS_MODALITY, service.code, None))
            problems.append((where, f"code {service.code} cannot be billed for {service.modality}; it allows: {allowed}"))
    if problems:
        raise InputError(problems, source)


@dataclass(frozen=True)
class CaseFact:
    pred: str
    values: tuple
    pointer: str


def line_id(index: int) -> str:
    """A service line's identity in the knowledge base: its JSON pointer."""
    return pointer("services", index)


def case_facts(case: Case, key: str, pack: str, version: str) -> list:
    """Every case fact, each with the pointer of the field it came from."""
    facts = [CaseFact(c.APPLIES_POLICY, (key, pack, version), "/payer")]
    add = _pointed(facts)
    for section in SECTIONS.values():
        section(case, key, add)
    return facts


def section_facts(case: Case, key: str, section: str) -> list:
    """The case facts of one top-level section of the case file (e.g. "monitoring")."""
    facts = []
    SECTIONS[section](case, key, _pointed(facts))
    return facts


def section_atoms(case: Case, key: str, section: str) -> set:
    """The (pred, values) of section_facts(case, key, section), no pointer built: what
    PosedCase.delta compares, for every variant of a section it documents."""
    atoms = set()
    SECTIONS[section](case, key, lambda pred, values, *_at: atoms.add((pred, values)))
    return atoms


def _pointed(facts: list):
    # A section gives each fact with the path parts of its field, and the pointer is built
    # only where it is kept: PosedCase.delta reads sections many times and needs no pointers.
    return lambda pred, values, *at: facts.append(CaseFact(pred, values, pointer(*at)))


def _procedure(case, key, add):
    proc = case.procedure
    add("procedure_kind", (key, proc.kind), "procedure", "kind")
    add("procedure_region", (key, proc.region), "procedure", "region")
    for i, code in enumerate(proc.codes):
        add("surgical_code", (key, code), "procedure", "codes", i)
    for i, level in enumerate(proc.levels):
        add("operated_level", (key, level), "procedure", "levels", i)
    for i, approach in enumerate(proc.approaches):
        add("uses_approach", (key, approach), "procedure", "approaches", i)
    for i, device in enumerate(proc.instrumentation):
        add("uses_instrumentation", (key, device), "procedure", "instrumentation", i)
    for sign in PROCEDURE_SIGNS:
        value = getattr(proc, sign)
        if value is not None:
            add("procedure_sign", (key, sign, _flag(value)), "procedure", sign)
    if proc.anesthesia_minutes is not None:
        add("anesthesia_minutes", (key, proc.anesthesia_minutes), "procedure", "anesthesia_minutes")


# The procedure's true/false/null flags (case/v1 additions of domain.md §8.9).
PROCEDURE_SIGNS = ("near_eloquent_cortex", "cranial_nerve_tumor", "high_risk_thyroid")


def _diagnoses(case, key, add):
    for i, dx in enumerate(case.diagnoses):
        add("has_diagnosis", (key, dx.code), "diagnoses", i, "code")
        # Code families (M50.0-) are matched by prefix: assert every prefix of three or more
        # characters that does not end in the dot.
        for n in range(3, len(dx.code) + 1):
            if not dx.code[:n].endswith("."):
                add("has_diagnosis_in", (key, dx.code[:n]), "diagnoses", i, "code")


def _clinical(case, key, add):
    clinical = case.clinical
    for sign in ("myelopathy", "radiculopathy", "neurological_deficit", "tethered_cord"):
        value = getattr(clinical, sign)
        if value is not None:
            add("clinical_sign", (key, sign, _flag(value)), "clinical", sign)
    if clinical.conus_level is not None:
        add("documented_conus_level", (key, clinical.conus_level), "clinical", "conus_level")


def _history(case, key, add):
    for h, entry in enumerate(case.history):
        add("prior_surgery", (key, h, entry.procedure), "history", h, "procedure")
        for i, level in enumerate(entry.levels):
            add("prior_surgery_level", (key, h, level), "history", h, "levels", i)
        if entry.outcome is not None:
            add("prior_surgery_outcome", (key, h, entry.outcome), "history", h, "outcome")


def _patient(case, key, add):
    if case.patient is not None and case.patient.age is not None:
        add("patient_age", (key, case.patient.age), "patient", "age")


def _monitoring(case, key, add):
    mon = case.monitoring
    if mon.setting is not None:
        add("monitoring_setting", (key, mon.setting), "monitoring", "setting")
    if mon.technologist_in_room is not None:
        add("technologist_in_room", (key, _flag(mon.technologist_in_room)), "monitoring", "technologist_in_room")
    if mon.minutes is not None:
        add("monitoring_minutes", (key, mon.minutes), "monitoring", "minutes")
    prof = mon.professional
    if prof.exclusive_minutes is not None:
        add("professional_exclusive_minutes", (key, prof.exclusive_minutes),
            "monitoring", "professional", "exclusive_minutes")
    if prof.member_of_surgical_team is not None:
        add("professional_on_surgical_team", (key, _flag(prof.member_of_surgical_team)),
            "monitoring", "professional", "member_of_surgical_team")
    if prof.real_time is not None:
        add("professional_real_time", (key, _flag(prof.real_time)), "monitoring", "professional", "real_time")
    if prof.concurrent_cases is not None:
        add("professional_concurrent_cases", (key, prof.concurrent_cases),
            "monitoring", "professional", "concurrent_cases")
    if mon.report.findings is not None:
        add("monitoring_findings", (key, mon.report.findings), "monitoring", "report", "findings")
    for i, text in enumerate(mon.report.interventions):
        add("monitoring_intervention", (key, text), "monitoring", "report", "interventions", i)


def _services(case, key, add):
    for i, service in enumerate(case.services):
        line = line_id(i)
        add("billed_line", (key, line, service.code), "services", i, "code")
        # Units left to their default point at the line itself.
        units_at = ("services", i, "units") if "units" in service.model_fields_set else ("services", i)
        add("billed_units", (key, line, service.units), *units_at)
        if service.modality is not None:
            add("billed_modality", (key, line, service.modality), "services", i, "modality")


# The case file's top-level sections and the facts each gives, in file order.
SECTIONS = {"procedure": _procedure, "diagnoses": _diagnoses, "clinical": _clinical, "history": _history,
            "patient": _patient, "monitoring": _monitoring, "services": _services}


def _flag(value: bool) -> str:
    return "true" if value else "false"


@dataclass(frozen=True)
class Documentable:
    """A field whose absence means "not documented": the values documenting it could take (None:
    case counts, tried at 1 and at each limit the rules compare with, and one past it) and
    what a provider is asked to document."""
    path: tuple
    values: Optional[tuple]
    question: str


# `conus_level` is left out: it has a stated default (the anatomy rules' last cord level); minutes
# (`monitoring.minutes`, `procedure.anesthesia_minutes`, `exclusive_minutes`) are not guessed.
DOCUMENTABLE = (
    Documentable(("procedure", "near_eloquent_cortex"), (True, False),
                 "whether the resection lies near eloquent (motor) cortex"),
    Documentable(("procedure", "cranial_nerve_tumor"), (True, False),
                 "whether the tumor is a cranial-nerve neuroma or cranial-base lesion"),
    Documentable(("procedure", "high_risk_thyroid"), (True, False),
                 "whether the thyroid or parathyroid surgery is high-risk (total, repeat, cancer, retrosternal or giant goiter)"),
    Documentable(("clinical", "myelopathy"), (True, False), "whether the patient has myelopathy"),
    Documentable(("clinical", "radiculopathy"), (True, False), "whether the patient has radiculopathy"),
    Documentable(("clinical", "neurological_deficit"), (True, False), "whether the patient has a neurological deficit"),
    Documentable(("clinical", "tethered_cord"), (True, False), "whether the spinal cord is tethered"),
    Documentable(("monitoring", "setting"), ("in_room", "remote"),
                 "where the interpreting professional was (in the room or remote)"),
    Documentable(("monitoring", "technologist_in_room"), (True, False),
                 "whether a technologist was in the operating room"),
    Documentable(("monitoring", "professional", "member_of_surgical_team"), (True, False),
                 "whether the interpreting professional was a member of the surgical team"),
    Documentable(("monitoring", "professional", "real_time"), (True, False),
                 "whether the interpreting professional interpreted in real time"),
    Documentable(("monitoring", "professional", "concurrent_cases"), None,
                 "how many cases the interpreting professional covered at the same time"),
    Documentable(("monitoring", "report", "findings"), ("normal", "changes"),
                 "the monitoring findings (normal or changes)"),
)
_DOCUMENTABLE = {d.path: d for d in DOCUMENTABLE}


def undocumented_fields(case: Case, count_limits=()) -> list:
    """(path, candidate values) of every DOCUMENTABLE field the case leaves undocumented."""
    counts = tuple(sorted({1} | {n for limit in count_limits for n in (limit, limit + 1) if n >= 1}))
    out = []
    for field in DOCUMENTABLE:
        obj = case
        for part in field.path:
            obj = getattr(obj, part)
        if obj is None:
            out.append((field.path, counts if field.values is None else field.values))
    return out


def with_documented(case: Case, assignments: list) -> Case:
    """A copy of the case with each (path, value) filled in (values from DOCUMENTABLE, valid by
    construction); untouched parts are shared, not copied."""
    for path, value in assignments:
        case = _replace(case, path, value)
    return case


def _replace(model, path, value):
    if len(path) == 1:
        return model.model_copy(update={path[0]: value})
    return model.model_copy(update={path[0]: _replace(getattr(model, path[0]), path[1:], value)})


def documented_view(case: Case, assignments: list):
    """What with_documented(case, assignments) gives, as plain attributes (SimpleNamespace)
    where the assignments reach and the case's own parts elsewhere: what section_facts reads
    of a variant, without copying a model."""
    for path, value in assignments:
        case = _view(case, path, value)
    return case


def _view(part, path, value):
    out = SimpleNamespace(**vars(part))
    setattr(out, path[0], value if len(path) == 1 else _view(getattr(part, path[0]), path[1:], value))
    return out


def pointer_map(facts: list) -> dict:
    """(pred, values) -> the JSON pointer of the first field that gave the fact."""
    pointers = {}
    for f in facts:
        pointers.setdefault((f.pred, f.values), f.pointer)
    return pointers


class PosedCase:
    """A validated case put to the rules under one policy version: what explain/ reads of it.

    `facts` are the pointed case facts, `pointers` maps each (pred, values) to its field,
    `lines` are the service lines' ids; `undocumented`, `question`, `field_pointer` and `delta`
    say what documenting a missing field would change."""

    def __init__(self, case: Case, policy, key: str = CASE_KEY, as_of: Optional[datetime.date] = None):
        self.case = case
        self.policy = policy
        self.as_of = as_of  # the date that picked the version when not the date of service (--as-of)
        self.key = key
        self.facts = case_facts(case, key, policy.pack, policy.version)
        self.pointers = pointer_map(self.facts)
        self.lines = [line_id(i) for i in range(len(case.services))]
        self._sections = {}  # section -> its (pred, values)
        self._documented = {}  # (section, its assignments) -> (facts added, facts removed) documenting them

    def undocumented(self, count_limits=()) -> list:
        return undocumented_fields(self.case, count_limits)

    @staticmethod
    def question(path: tuple) -> str:
        return _DOCUMENTABLE[path].question

    @staticmethod
    def field_pointer(path: tuple) -> str:
        return pointer(*path)

    def delta(self, assignments: list) -> tuple:
        """(facts added, facts removed) when each (path, value) is documented. A section's facts
        come from its own fields alone, so only the sections the assignments touch can change,
        each by its own assignments (kept: a pair's sections are its singles' again)."""
        by_section = {}
        for path, value in assignments:
            by_section.setdefault(path[0], []).append((path, value))
        add, remove = set(), set()
        for section, chosen in by_section.items():
            change = self._documented.get((section, tuple(chosen)))
            if change is None:
                before = self._sections.get(section)
                if before is None:
                    before = self._sections[section] = section_atoms(self.case, self.key, section)
                after = section_atoms(documented_view(self.case, chosen), self.key, section)
                change = self._documented[(section, tuple(chosen))] = (after - before, before - after)
            add |= change[0]
            remove |= change[1]
        return add, remove


def pose(case: Case, kb, *, payer: Optional[str] = None, as_of: Optional[datetime.date] = None,
         source: str = "", check: bool = True) -> PosedCase:
    """The case under the policy version in force: its payer (or `payer`) on its date of service
    (or `as_of`), its values checked against the rules' vocabulary first."""
    if check:
        check_vocabulary(case, kb, source)
    chosen = policies.select(kb, payer or case.payer, as_of or case.date_of_service,
                             pack_pointer="/payer", date_pointer="/date_of_service")
    return PosedCase(case, chosen, as_of=as_of)
