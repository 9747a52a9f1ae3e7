"""The library's façade, which the CLI, batch, golden cases and tests share: load rules (one
engine per thread), read a case, decide, explain and render.

    kb = knowledge_base()                       # this thread's Engine for the shipped rules
    case = read_case("case.json")               # or parse_case(text)
    decision = explain_case(kb, case)           # a Decision; unpacks as (document, basis)
    print(render_decision(decision, "text"))
"""
from __future__ import annotations

import datetime
import gc
import threading
from pathlib import Path
from typing import Optional

from .case import CASE_KEY, LIMITS, PosedCase, parse_case, pose  # noqa: F401 - part of the façade
from .engine import RulesError, RuleSet, load_rules, shipped_rules_dir  # noqa: F401
from .engine.engine import Engine, EngineThreadError  # noqa: F401
from .errors import InputError, quoted
from .explain import Decision, check_target, decide, report_details  # noqa: F401
from .explain import run_query as _run_query
from .explain import why_not as _why_not
from .render import FORMATS as RENDER_FORMATS
from .render import render as render_decision  # noqa: F401
from .render.json import render as to_json  # noqa: F401 - part of the façade

# Formats of `explain`: the renderers', and the FHIR documents built in fhir/crd.py.
FHIR_FORMATS = ("crd", "questionnaire")
FORMATS = RENDER_FORMATS + FHIR_FORMATS

_RULESETS = {}  # rule folders -> RuleSet: pure data, parsed once per process, read by every thread
_RULESETS_LOCK = threading.Lock()
_ENGINES = threading.local()  # per thread: rule folders -> that thread's Engine


def _key(rule_dirs) -> tuple:
    return tuple(str(Path(d)) for d in rule_dirs)


def rule_set(rule_dirs=()) -> RuleSet:
    """The checked rules for the shipped files plus `rule_dirs`, loaded once per process."""
    key = _key(rule_dirs)
    with _RULESETS_LOCK:
        found = _RULESETS.get(key)
        if found is None:
            found = _RULESETS[key] = load_rules(rule_dirs)
    return found


def knowledge_base(rule_dirs=()) -> Engine:
    """This thread's engine for the shipped rules plus `rule_dirs`, compiled once per thread.

    pyDatalog's state is per thread and an Engine refuses work from any thread but its own
    (EngineThreadError), so each thread gets its own Engine over the one shared RuleSet; the
    cache lives in thread-local storage and goes with its thread."""
    engines = getattr(_ENGINES, "engines", None)
    if engines is None:
        engines = _ENGINES.engines = {}
    key = _key(rule_dirs)
    kb = engines.get(key)
    if kb is None:
        kb = engines[key] = Engine(rule_set(rule_dirs))
    return kb


def tune_memory_for_many_cases() -> None:
    """Set this process's cyclic garbage collector for deciding many cases on loaded rules.

    The loaded rules live as long as the process: frozen, they are out of the collector's
    reach, where every full collection would otherwise re-walk them (measured: a quarter of a
    case's time). The engine allocates many short-lived objects per case; a larger first
    generation collects them in fewer passes. Memory stays flat: cycles are still collected."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def read_case(path: str):
    """Read and validate a case file ('-' for standard input)."""
    return parse_case(*_read_bytes(path))


def read_input(path: str, kb, answers: Optional[str] = None, payer: Optional[str] = None):
    """Read a case file v1 or a FHIR Bundle ('-' for standard input), with a QuestionnaireResponse's
    answers applied if given: an inputs.Input. `payer` (--payer) overrides the input's payer."""
    from .inputs import apply_answers, parse_input

    raw, source = _read_bytes(path)
    inp = parse_input(raw, kb, source, payer_given=payer is not None)
    if answers:
        inp = apply_answers(inp, *_read_bytes(answers))
    return inp


def explain_input(kb, inp, *, payer=None, as_of=None, proofs: bool = True) -> Decision:
    """explain_case for an inputs.Input: its proofs' case leaves and its errors point into the
    user's own document (the Bundle, the QuestionnaireResponse)."""
    return decide(kb, pose_input(kb, inp, payer=payer, as_of=as_of), proofs=proofs)


def pose_input(kb, inp, *, payer=None, as_of=None) -> PosedCase:
    """pose for an inputs.Input: its facts' pointers, and its errors, in the user's own document."""
    try:
        posed = pose(inp.case, kb, payer=payer, as_of=as_of, source=inp.source)
    except InputError as exc:
        exc.source = exc.source or inp.source
        raise inp.rewrite_error(exc) from None
    if inp.located:
        posed.pointers = {fact: inp.locate(ptr) for fact, ptr in posed.pointers.items()}
    return posed


def render_input(kb, inp, decision: Decision, fmt: str, detail: str = "short", line: Optional[str] = None) -> str:
    """render_decision, and the FHIR formats: a CDS Hooks CRD response, a DTR Questionnaire."""
    if fmt in FHIR_FORMATS:
        from .fhir import crd

        document = decision.document
        return to_json(crd.cds_response(kb, inp, document) if fmt == "crd" else crd.questionnaire(inp, document))
    return render_decision(decision, fmt, detail, line)


def _read_bytes(path: str) -> tuple:
    import sys

    # One byte past the limit is enough to say the case is too long: never read all of it.
    if path == "-":
        return sys.stdin.buffer.read(LIMITS["record_bytes"] + 1), "<stdin>"
    try:
        with open(path, "rb") as fh:
            return fh.read(LIMITS["record_bytes"] + 1), path
    except FileNotFoundError:
        raise InputError([("", "no such file")], path) from None
    except IsADirectoryError:
        raise InputError([("", "is a folder, not a case file")], path) from None
    except OSError as exc:
        raise InputError([("", f"cannot read the file: {exc.strerror}")], path) from None


def parse_date(text: Optional[str], what: str = "--as-of") -> Optional[datetime.date]:
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise InputError([("", f"{what} {quoted(text)} is not an ISO date (YYYY-MM-DD)")]) from None


def check_payer(kb, payer: Optional[str], what: str = "--payer") -> None:
    """Reject a payer option that names no policy pack, before any case is read."""
    from .policy import pack_titles

    titles = pack_titles(kb)
    if payer is not None and payer not in titles:
        raise InputError([("", f"{what} {quoted(payer)} is not a policy pack; known packs: {', '.join(sorted(titles))}")])


def explain_with_basis(kb, case, *, payer=None, as_of=None, missing: bool = True, proofs: bool = True,
                       source: str = "") -> Decision:
    """The Decision on a validated case: posed (vocabulary checked, policy version chosen),
    then decided. `proofs=False` leaves every proof None (batch --detail short; benchmarks)."""
    return decide(kb, pose(case, kb, payer=payer, as_of=as_of, source=source), missing=missing, proofs=proofs)


def explain_case(kb, case, *, payer=None, as_of=None, source="", proofs: bool = True) -> Decision:
    """explain_with_basis, with every input error naming `source`."""
    try:
        return explain_with_basis(kb, case, payer=payer, as_of=as_of, source=source, proofs=proofs)
    except InputError as exc:
        exc.source = exc.source or source
        raise InputError(exc.problems, exc.source) from None


def explain(kb, case, **options) -> dict:
    """The determination/v1 document for a validated case."""
    return explain_with_basis(kb, case, **options).document


def why_not(kb, case, target: str, *, payer=None, as_of=None, source="") -> dict:
    """The why-not/v1 report for a CODE=DETERMINATION target."""
    index, determination = check_target(case, target, source)
    return _why_not(kb, pose(case, kb, payer=payer, as_of=as_of, source=source), index, determination)


def run_query(kb, text: str, case=None, why: bool = False, source: str = ""):
    """(variable names, answer rows, [(answer atom, proof node)]) of an ad hoc query."""
    if case is None:
        return _run_query(kb, text, None, why)
    from .explain.query import parse_query_text

    parse_query_text(kb, text)  # a bad query is reported before the case is checked
    return _run_query(kb, text, pose(case, kb, source=source), why)


def exercised_rules(kb, case, *, payer=None, as_of=None) -> set:
    """Ids of the rules whose bodies have a witness for this case (rule coverage)."""
    from .explain import exercised_rules as exercised

    return exercised(kb, pose(case, kb, payer=payer, as_of=as_of, check=False))


def render(kb, case, result: dict, basis: list, fmt: str, detail: str = "short", line: Optional[str] = None) -> str:
    """Render a (document, basis) pair from the earlier API; render_decision takes a Decision."""
    return render_decision(Decision(result, basis, **report_details(kb, case, result)), fmt, detail, line)
