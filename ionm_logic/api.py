"""The library entry points the CLI and tests share: load rules, read a case, explain, render."""
from __future__ import annotations

import datetime
import gc
import json
from pathlib import Path
from typing import Optional

from .case import parse_case
from .decide import explain_with_basis
from .errors import InputError
from .kb import KnowledgeBase
from .report import build, render_markdown, render_text

FORMATS = ("text", "json", "markdown", "html", "dot", "crd", "questionnaire")

_KB_CACHE = {}


def knowledge_base(rule_dirs=()) -> KnowledgeBase:
    """The knowledge base for the shipped rules plus `rule_dirs`, loaded once per process."""
    key = tuple(str(Path(d)) for d in rule_dirs)
    kb = _KB_CACHE.get(key)
    if kb is None:
        kb = _KB_CACHE[key] = KnowledgeBase(rule_dirs)
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


def explain_input(kb, inp, *, payer=None, as_of=None):
    """explain_case for an inputs.Input: proofs and errors point into the user's document."""
    try:
        return explain_case(kb, inp.case, payer=payer, as_of=as_of, source=inp.source,
                            locate=inp.locate if inp.located else None)
    except InputError as exc:
        raise inp.rewrite_error(exc) from None


def render_input(kb, inp, result: dict, basis: list, fmt: str, detail: str = "short",
                 line: Optional[str] = None) -> str:
    if fmt in ("crd", "questionnaire"):
        from .fhir import crd

        doc = crd.cds_response(kb, inp, result) if fmt == "crd" else crd.questionnaire(inp, result)
        return to_json(doc)
    return render(kb, inp.case, result, basis, fmt, detail, line)


def _read_bytes(path: str):
    import sys

    if path == "-":
        return sys.stdin.buffer.read(), "<stdin>"
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise InputError([("", "no such file")], path) from None
    except IsADirectoryError:
        raise InputError([("", "is a folder, not a case file")], path) from None
    except OSError as exc:
        raise InputError([("", f"cannot read the file: {exc.strerror}")], path) from None
    return raw, path


def parse_date(text: Optional[str], what: str = "--as-of") -> Optional[datetime.date]:
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise InputError([("", f"{what} {text!r} is not an ISO date (YYYY-MM-DD)")]) from None


def explain_case(kb, case, *, payer=None, as_of=None, source="", locate=None):
    try:
        return explain_with_basis(kb, case, payer=payer, as_of=as_of, source=source, locate=locate)
    except InputError as exc:
        exc.source = exc.source or source
        raise InputError(exc.problems, exc.source) from None


def to_json(result: dict) -> str:
    return json.dumps(result, indent=2, ensure_ascii=False) + "\n"


def render(kb, case, result: dict, basis: list, fmt: str, detail: str = "short", line: Optional[str] = None) -> str:
    if fmt == "json":
        return to_json(result)
    if fmt == "html":
        from .render_html import render_html

        return render_html(result, basis, kb, case)
    if fmt == "dot":
        from .render_dot import render_dot

        return render_dot(result, line)
    sections = build(result, basis, kb, case, detail)
    if fmt == "markdown":
        return render_markdown(sections)
    return render_text(sections)
