"""Render a determination as one self-contained HTML page: the report, a collapsible proof tree
per finding, citations linked to the numbered references, print-friendly styles. No network."""
from __future__ import annotations

import html
import re

from tabulate import tabulate

from .nodes import label, where
from .report import build

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
@media print {
  body { max-width: none; margin: 0; font-size: 11pt; }
  details > summary { list-style: none; }
  a { color: inherit; }
}
"""


def _link_refs(text: str) -> str:
    """Escape text and turn trailing [1, 2] markers into links to the reference list."""
    escaped = html.escape(text)

    def links(match):
        nums = [n.strip() for n in match.group(1).split(",")]
        return "[" + ", ".join(f'<a class="ref" href="#ref-{n}">{n}</a>' for n in nums) + "]"

    return re.sub(r"\[(\d+(?:, \d+)*)\]", links, escaped)


def _node(node: dict) -> str:
    kind = node["node"]
    text = html.escape(node.get("text") or node["atom"])
    head = (f'<span class="kind">{html.escape(label(node))}</span> {text} '
            f'<span class="where">{html.escape(where(node))}</span>')
    children = node.get("children") or []
    if not children:
        return f'<div class="node {kind}">{head}</div>'
    inner = "".join(_node(c) for c in children)
    return f'<div class="node {kind}"><details><summary>{head}</summary>{inner}</details></div>'


def render(decision) -> str:
    """A Decision as one HTML page, a proof tree under every finding."""
    sections = build(decision, trees=True)
    title = sections[0][0]
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>{CSS}</style></head><body>"]
    for i, (heading, blocks) in enumerate(sections):
        parts.append(f"<h1>{html.escape(heading)}</h1>" if i == 0 else f"<h2>{html.escape(heading)}</h2>")
        for block in blocks:
            kind = block[0]
            if kind == "p":
                parts.append(f"<p>{_link_refs(block[1])}</p>")
            elif kind == "h3":
                parts.append(f'<h3 class="line-head">{html.escape(block[1])}</h3>')
            elif kind == "ul":
                parts.append("<ul>" + "".join(f"<li>{_link_refs(item)}</li>" for item in block[1]) + "</ul>")
            elif kind == "ol":
                items = []
                for n, item in enumerate(block[1], 1):
                    text = re.sub(r"^\d+\. ", "", item)
                    items.append(f'<li id="ref-{n}">{html.escape(text)}</li>')
                parts.append("<ol>" + "".join(items) + "</ol>")
            elif kind == "table":
                parts.append(tabulate(block[1], headers=block[2], tablefmt="html"))
            elif kind == "pre":
                parts.append("<pre>" + html.escape("\n".join(block[1])) + "</pre>")
            elif kind == "tree":
                parts.append(f'<details class="proof"><summary>{html.escape(block[1])}</summary>'
                             f"{_node(block[2])}</details>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
