"""Render proofs as a Graphviz digraph: one cluster per finding, a node per proof step."""
from __future__ import annotations

from ..explain.text import plain
from .nodes import label, where

SHAPES = {"rule": "box", "fact": "note", "case": "folder", "absent": "ellipse", "builtin": "diamond"}


def _quote(text: str) -> str:
    """A DOT string: each line the renderer wrote (split at newlines) as one visible line of
    text (`plain`), quotes and backslashes escaped, the lines joined by DOT's line break."""
    return '"' + "\\n".join(plain(part).replace("\\", "\\\\").replace('"', '\\"')
                             for part in text.split("\n")) + '"'


def render(result: dict, code: str = None) -> str:
    """The proofs of a determination/v1 document (only line `code`, a code or pointer, if given)."""
    lines = [f"digraph {_quote('ionm-logic ' + result['case_id'])} {{", "  rankdir=LR;",
             '  node [fontname="Helvetica", fontsize=10];']
    counter = [0]

    def add(node, cluster_lines) -> str:
        counter[0] += 1
        name = f"n{counter[0]}"
        kind = node["node"]
        text = node["atom"] if kind != "rule" else f"{label(node)}\n{node['atom']}"
        if where(node):
            text += f"\n{where(node)}"
        style = ', style="dashed"' if kind == "absent" else ""
        cluster_lines.append(f"    {name} [shape={SHAPES[kind]}{style}, label={_quote(text)}];")
        for child in node.get("children") or []:
            child_name = add(child, cluster_lines)
            cluster_lines.append(f"    {name} -> {child_name};")
        return name

    chosen = [l for l in result["lines"] if code is None or l["code"] == code or l["pointer"] == code]
    for li, line in enumerate(chosen):
        for fi, finding in enumerate(line["findings"]):
            body = [f"  subgraph cluster_{li}_{fi} {{",
                    f"    label={_quote(line['pointer'] + ' ' + line['code'] + ': ' + finding['determination'])};"]
            add(finding["proof"], body)
            body.append("  }")
            lines += body
    lines.append("}")
    return "\n".join(lines) + "\n"
