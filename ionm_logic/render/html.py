"""Render a determination as one self-contained HTML page: the report, a collapsible proof tree
per finding, citations linked to the numbered references, print-friendly styles. No network."""
from __future__ import annotations

import html
import re

from ..explain.text import plain
from .nodes import label, where
from .report import HEADLINES, build

CSS = """
body { font: 15px/1.5 Georgia, 'Times New Roman', serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.5rem; border-bottom: 2px solid #444; padding-bottom: .3rem; }
h2 { font-size: 1.15rem; margin-top: 1.8rem; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; font: 13px/1.4 system-ui, sans-serif; }
th, td { border: 1px solid #ccc; padding: .25rem .5rem; text-align: left; vertical-align: top; }
th { background: #f2f2f2; }
.line-head { font-size: 1rem; margin: 1rem 0 .2rem; }
details { margin: .2rem 0 .2rem 1rem; font: 13px/1.45 system-ui, sans-serif; }
details > summary { cursor: pointer; }
.node { margin-left: 1.1rem; border-left: 1px dotted #aaa; padding-left: .5rem; }
.kind { display: inline-block; min-width: 4.5rem; font-weight: bold; color: #555; }
.rule .kind { color: #1d4f91; } .case .kind { color: #8a4b00; } .fact .kind { color: #2d6a2d; }
.absent .kind { color: #777; } .builtin .kind { color: #6a2d6a; }
.where { color: #777; font-family: ui-monospace, monospace; font-size: 12px; }
a.ref { text-decoration: none; }
/* A determination at a glance: a labelled badge whose colour and border style both say the
   kind, so it reads on a black-and-white printout too (the label and symbol carry it alone). */
.status { display: inline-block; font: bold 12px/1.3 system-ui, sans-serif; padding: .1rem .45rem;
  border: 3px solid #000; border-radius: 3px; white-space: nowrap; color: #000; }
.status-yes { background: #d6f0d6; border-style: solid; }
.status-no { background: #f6d3d3; border-style: double; border-width: 4px; }
.status-conditional { background: #fbe7bf; border-style: dashed; }
.status-open { background: #e4e4e4; border-style: dotted; }
.status-mixed { background: #d9e4f5; border-style: groove; border-width: 4px; }
.verdict { margin: .6rem 0; padding: .5rem .7rem; border-left: 6px solid #444; background: #fafafa; }
.verdict .status { font-size: 14px; margin-right: .4rem; }
@media print {
  body { max-width: none; margin: 0; font-size: 11pt; }
  details > summary { list-style: none; }
  a { color: inherit; }
  .status { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
}
"""

# How each determination looks: the badge's kind (colour and border), its symbol and label.
STATUS_KIND = {
    "medically_necessary": ("yes", "\u2713"),
    "not_medically_necessary": ("no", "\u2717"), "insufficient_evidence": ("no", "\u2717"),
    "not_separately_reimbursable": ("no", "\u2717"),
    "requirements_not_met": ("conditional", "!"), "documentation_insufficient": ("conditional", "!"),
    "undetermined": ("open", "?"), "partial": ("mixed", "\u00b1"),
}


def status(determination: str) -> str:
    """A determination as a labelled badge (colour, border style, symbol and words)."""
    kind, symbol = STATUS_KIND.get(determination, ("open", "?"))
    return (f'<span class="status status-{kind}" data-determination="{html.escape(determination)}">'
            f'{symbol} {html.escape(HEADLINES.get(determination, determination))}</span>')


def esc(text) -> str:
    """Any string as HTML text: one visible line (`plain`), then escaped."""
    return html.escape(plain(text))


def _link_refs(text: str) -> str:
    """Escape text and turn its trailing [1, 2] marker into links to the reference list."""
    escaped = esc(text)

    def links(match):
        nums = [n.strip() for n in match.group(1).split(",")]
        return "[" + ", ".join(f'<a class="ref" href="#ref-{n}">{n}</a>' for n in nums) + "]"

    # Only the marker the report appends (at the end, or before the rule id) links: a "[1]" in
    # case text stays text.
    return re.sub(r"\[(\d+(?:, \d+)*)\](?=(?: \([A-Z][A-Z0-9-]*\))?$)", links, escaped)


def _node(node: dict) -> str:
    kind = node["node"]
    text = esc(node.get("text") or node["atom"])
    head = (f'<span class="kind">{esc(label(node))}</span> {text} '
            f'<span class="where">{esc(where(node))}</span>')
    children = node.get("children") or []
    if not children:
        return f'<div class="node {kind}">{head}</div>'
    inner = "".join(_node(c) for c in children)
    return f'<div class="node {kind}"><details><summary>{head}</summary>{inner}</details></div>'


def _table(rows, headers, statuses=None) -> str:
    """A table; with `statuses` (a determination per row), the Determination column as badges."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    column = headers.index("Determination") if statuses else None
    body = []
    for r, row in enumerate(rows):
        cells = [status(statuses[r]) if i == column else esc(cell) for i, cell in enumerate(row)]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render(decision) -> str:
    """A Decision as one HTML page, a proof tree under every finding, a status badge on the
    case and on every line."""
    sections = build(decision, trees=True)
    title = sections[0][0]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(title)}</title>", f"<style>{CSS}</style></head><body>"]
    for i, (heading, blocks) in enumerate(sections):
        parts.append(f"<h1>{esc(heading)}</h1>" if i == 0 else f"<h2>{esc(heading)}</h2>")
        for block in blocks:
            kind = block[0]
            if kind == "p":
                parts.append(f"<p>{_link_refs(block[1])}</p>")
            elif kind == "status":
                parts.append(f'<p class="verdict" data-determination="{html.escape(block[1])}">'
                             f"{status(block[1])} {_link_refs(block[2])}</p>")
            elif kind == "h3":
                parts.append(f'<h3 class="line-head">{status(block[2])} {esc(block[1])}</h3>')
            elif kind == "ul":
                parts.append("<ul>" + "".join(f"<li>{_link_refs(item)}</li>" for item in block[1]) + "</ul>")
            elif kind == "ol":
                items = []
                for n, item in enumerate(block[1], 1):
                    text = re.sub(r"^\d+\. ", "", item)
                    items.append(f'<li id="ref-{n}">{esc(text)}</li>')
                parts.append("<ol>" + "".join(items) + "</ol>")
            elif kind == "table":
                parts.append(_table(block[1], block[2], block[3] if len(block) > 3 else None))
            elif kind == "pre":
                parts.append("<pre>" + "\n".join(esc(line) for line in block[1]) + "</pre>")
            elif kind == "tree":
                parts.append(f'<details class="proof"><summary>{esc(block[1])}</summary>'
                             f"{_node(block[2])}</details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
