"""How every renderer names a proof node: its label and where it comes from."""
from __future__ import annotations

from ..explain.text import plain

# The label of each kind of proof node; a rule node is labelled by its rule id.
LABELS = {"fact": "fact", "case": "case", "absent": "absent", "builtin": "check"}


def label(node: dict) -> str:
    return node.get("rule", "rule") if node["node"] == "rule" else LABELS[node["node"]]


def where(node: dict) -> str:
    """file:line for a rule or fact, the JSON pointer for a case fact, else nothing."""
    kind = node["node"]
    if kind in ("rule", "fact"):
        return f"{node['source']['file']}:{node['source']['line']}"
    if kind == "case":
        return node["pointer"]
    return ""


def proof_lines(node: dict, depth: int = 0, max_depth=None) -> list:
    """A proof tree as indented text lines: [label] text  (where), each one visible line."""
    place = where(node)
    lines = [f"{'  ' * depth}[{label(node)}] {plain(node.get('text') or node['atom'])}"
             + (f"  ({plain(place)})" if place else "")]
    if max_depth is None or depth < max_depth:
        for child in node.get("children") or []:
            lines += proof_lines(child, depth + 1, max_depth)
    return lines


def proof_citations(node: dict) -> list:
    """Every citation key a proof tree cites, in tree order (repeats kept)."""
    keys = list(node.get("citations") or [])
    for child in node.get("children") or []:
        keys += proof_citations(child)
    return keys
