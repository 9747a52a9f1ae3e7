"""The library entry points the CLI and tests share: load rules, read a case, explain, render."""
from __future__ import annotations

import datetime
import gc
import json
from pathlib import Path
from typing import Optional

from .case import LIMITS, parse_case
from .decide import explain_with_basis
from .errors import InputError, quoted
from .kb import KnowledgeBase
from .report import build, render_markdown, render_text

FORMATS = ("text", "json", "markdown", "html", "dot")

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
    import sys

    # One byte past the limit is enough to say the case is too long: never read all of it.
    if path == "-":
        return parse_case(sys.stdin.buffer.read(LIMITS["record_bytes"] + 1), "<stdin>")
    p = Path(path)
    try:
        with open(p, "rb") as fh:
            raw = fh.read(LIMITS["record_bytes"] + 1)
    except FileNotFoundError:
        raise InputError([("", "no such file")], path) from None
    except IsADirectoryError:
        raise InputError([("", "is a folder, not a case file")], path) from None
    except OSError as exc:
        raise InputError([("", f"cannot read the file: {exc.strerror}")], path) from None
    return parse_case(raw, path)


def check_payer(kb, payer: Optional[str], what: str = "--payer") -> None:
    """Reject a payer option that names no policy pack, before any case is read."""
    from .policy import pack_titles

    titles = pack_titles(kb)
    if payer is not None and payer not in titles:
        raise InputError([("", f"{what} {quoted(payer)} is not a policy pack; known packs: {', '.join(sorted(titles))}")])


def parse_date(text: Optional[str], what: str = "--as-of") -> Optional[datetime.date]:
    if text is None:
        return None
    try:
        return datetime.date.fromisoformat(text)
    except ValueError:
        raise InputError([("", f"{what} {quoted(text)} is not an ISO date (YYYY-MM-DD)")]) from None


def explain_case(kb, case, *, payer=None, as_of=None, source="", proofs=True):
    try:
        return explain_with_basis(kb, case, payer=payer, as_of=as_of, source=source, proofs=proofs)
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
