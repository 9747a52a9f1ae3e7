"""Renderings of finished results; each takes the result and nothing else (no knowledge base).

Public surface: `render(decision, fmt, detail, line)` for the formats in FORMATS; the modules
`text` (report, `render_why_not`, `render_diff`), `markdown`, `html`, `dot`, `json`, each with
`render`; `report.build` (the report's sections) and `nodes` (proof-node labels, proof lines).
"""
from __future__ import annotations

from typing import Optional

FORMATS = ("text", "json", "markdown", "html", "dot")


def render(decision, fmt: str, detail: str = "short", line: Optional[str] = None) -> str:
    """A Decision (explain.decide) in one of FORMATS."""
    if fmt == "json":
        from . import json

        return json.render(decision.document)
    if fmt == "html":
        from . import html

        return html.render(decision)
    if fmt == "dot":
        from . import dot

        return dot.render(decision.document, line)
    if fmt == "markdown":
        from . import markdown

        return markdown.render(decision, detail)
    from . import text

    return text.render(decision, detail)
