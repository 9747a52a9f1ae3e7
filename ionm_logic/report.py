"""Render a determination as a reviewer's report: plain text or Markdown.

The report follows the shape of a written determination: headline, anatomical basis, a
summary table, analysis by code, evidence quality, limited exceptions, common pitfalls, final
determination and numbered references (numbered in order of first use). Every sentence comes
from a rule's or a predicate's template; nothing here knows medicine.
"""
from __future__ import annotations

from tabulate import tabulate

HEADLINES = {
    "medically_necessary": "MEDICALLY NECESSARY",
    "not_medically_necessary": "NOT MEDICALLY NECESSARY",
    "insufficient_evidence": "INSUFFICIENT EVIDENCE (unproven)",
    "not_separately_reimbursable": "NOT SEPARATELY REIMBURSABLE",
    "requirements_not_met": "REQUIREMENTS NOT MET",
    "documentation_insufficient": "DOCUMENTATION INSUFFICIENT",
    "undetermined": "UNDETERMINED",
    "partial": "PARTIALLY MEDICALLY NECESSARY",
}


class References:
    """Numbers citation keys in order of first use."""

    def __init__(self, citations: dict):
        self.citations = citations
        self.order = []

    def mark(self, keys) -> str:
        nums = []
        for key in keys:
            if key not in self.citations:
                continue
            if key not in self.order:
                self.order.append(key)
            nums.append(self.order.index(key) + 1)
        nums = sorted(set(nums))
        return f" [{', '.join(map(str, nums))}]" if nums else ""

    def entries(self) -> list:
        out = []
        for n, key in enumerate(self.order, 1):
            c = self.citations[key]
            verified = c.get("verified")
            note = {"no": " Citation not verified.", "secondary": " Reported by secondary sources; attribution unverified."}.get(verified, "")
            out.append(f"{n}. {c.get('title')}. {c.get('source')}. {c.get('year')}. "
                       f"Evidence: {c.get('evidence_level')}.{note} [{key}]")
        return out


def _proof_citations(node) -> list:
    keys = list(node.get("citations") or [])
    for child in node.get("children") or []:
        keys += _proof_citations(child)
    return keys


def _proof_lines(node, depth=0, max_depth=None) -> list:
    kind = node["node"]
    label = {"rule": f"[{node.get('rule')}]", "fact": "[fact]", "case": "[case]",
             "absent": "[absent]", "builtin": "[check]"}[kind]
    where = ""
    if kind in ("rule", "fact"):
        where = f"  ({node['source']['file']}:{node['source']['line']})"
    elif kind == "case":
        where = f"  ({node['pointer']})"
    lines = [f"{'  ' * depth}{label} {node.get('text') or node['atom']}{where}"]
    if max_depth is None or depth < max_depth:
        for child in node.get("children") or []:
            lines += _proof_lines(child, depth + 1, max_depth)
    return lines


def _name(code_line: dict, kb) -> str:
    found = kb.values("code_description", code_line["code"], None)
    modality = code_line.get("modality")
    parts = []
    if modality:
        names = kb.values("modality_name", modality, None)
        parts.append(names[0][1] if names else modality)
    if found:
        parts.append(found[0][1])
    return "; ".join(parts) or "unknown code"


def build(result: dict, basis: list, kb, case, detail: str = "short", trees: bool = False) -> list:
    """The report as sections: (title, [blocks]); a block is ('p', text), ('h3', text), ('ul', [items]),
    ('ol', [items]), ('table', rows, headers), ('pre', lines) or, with `trees`, ('tree', label,
    proof) for every finding."""
    refs = References(result["citations"] | {k: c.fields for k, c in kb.citations.items()})
    description = case.procedure.description or case.procedure.kind.replace("_", " ")
    overall = result["overall"]
    sections = []

    # Headline: the overall determination, and the findings that decided the lines' headlines
    # (each rule once, the rules deciding most lines first).
    deciding = {}
    for line in result["lines"]:
        for f in line["findings"]:
            if f["determination"] == line["determination"]:
                deciding.setdefault(f["rule"], [f, []])[1].append(line["code"])
    lead = f"IONM during {description} is {HEADLINES[overall['determination']]}. {overall['text']}"
    blocks = [("p", lead)]
    ranked = sorted(deciding.values(), key=lambda entry: -len(entry[1]))
    if ranked:
        blocks.append(("ul", [f"{', '.join(codes)}: {f['text']}" + refs.mark(f["citations"])
                              for f, codes in ranked]))
    policy = result["policy"]
    window = f"{policy['in_force'][0]} to {policy['in_force'][1] or 'open'}"
    blocks.append(("p", f"Case {result['case_id']}; payer policy {policy['id']}, version {policy['version']} "
                        f"(in force {window}); date of service {case.date_of_service.isoformat()}."))
    sections.append((f"Medical Necessity Determination for IONM During {description}", blocks))

    if basis:
        items = [_cap(n["text"]) + refs.mark(_proof_citations(n)) for n in basis]
        sections.append(("Anatomical Basis", [("ul", items)]))

    rows = []
    for line in result["lines"]:
        rules = ", ".join(f["rule"] for f in line["findings"]) or "-"
        rows.append([line["pointer"], line["code"], line.get("modality") or "-", line["units"],
                     line["determination"], rules])
    sections.append(("Summary", [("table", rows, ["Line", "Code", "Modality", "Units", "Determination", "Rules"])]))

    analysis = []
    for line in result["lines"]:
        items = []
        for f in line["findings"]:
            items.append(f"{HEADLINES[f['determination']].capitalize()}: {f['text']}"
                         + refs.mark(f["citations"] + _proof_citations(f["proof"])) + f" ({f['rule']})")
        if not line["findings"]:
            items.append(line.get("reason", "No rule concludes on this line."))
        for c in line["considerations"]:
            items.append(f"Consideration: {c['text']}" + refs.mark(c["citations"]) + f" ({c['rule']})")
        for gap in line["missing_documentation"]:
            items.append(f"Missing documentation: {gap['text']}")
        heading = f"{line['code']} ({_name(line, kb)}) - {HEADLINES[line['determination']]}"
        analysis.append(("h3", heading))
        analysis.append(("ul", items))
        if trees:
            for f in line["findings"] + line["considerations"]:
                analysis.append(("tree", f"Proof: {f['rule']}", f["proof"]))
        elif detail == "full":
            for f in line["findings"]:
                analysis.append(("pre", [f"Proof of {f['rule']}:"] + _proof_lines(f["proof"])))
    sections.append(("Analysis by Code", analysis))

    evidence = []
    for key in list(refs.order):
        c = refs.citations[key]
        if c.get("summary") and c.get("kind") in ("study", "guideline"):
            evidence.append(f"{c['summary']} ({c.get('evidence_level')})" + refs.mark([key]))
    if evidence:
        sections.append(("Evidence Quality", [("ul", evidence)]))

    exceptions, seen = [], {}
    for line in result["lines"]:
        for c in line["considerations"]:
            seen.setdefault(c["rule"], (c, []))[1].append(line["code"])
    for rule, (c, codes) in seen.items():
        which = f"line{'s' if len(codes) > 1 else ''} {', '.join(codes)}"
        exceptions.append(f"{c['text']} ({which})" + refs.mark(c["citations"]))
    if exceptions:
        sections.append(("Limited Exceptions", [("ul", exceptions)]))

    if result["observations"]:
        items = [o["text"] + refs.mark(o["citations"]) for o in result["observations"]]
        sections.append(("Common Pitfalls in This Case", [("ul", items)]))

    final = [f"Final determination: {HEADLINES[overall['determination']]}. {overall['text']}"]
    by_head = {}
    for line in result["lines"]:
        by_head.setdefault(line["determination"], []).append(line["code"])
    for det, codes in by_head.items():
        final.append(f"{HEADLINES[det].capitalize()}: {', '.join(codes)}.")
    if exceptions:
        final.append(f"{len(seen)} limited exception{'s' if len(seen) != 1 else ''} above "
                     "(shown for the reviewer) do not change these determinations under the policy.")
    sections.append(("Final Determination", [("p", " ".join(final))]))
    sections.append(("References", [("ol", refs.entries())]))
    return sections


def _cap(text: str) -> str:
    text = text[:1].upper() + text[1:]
    return text if text.endswith(".") else text + "."


def render_text(sections: list) -> str:
    out = []
    for i, (title, blocks) in enumerate(sections):
        out.append(title if i == 0 else f"\n{title}")
        out.append("=" * len(title) if i == 0 else "-" * len(title))
        for block in blocks:
            kind = block[0]
            if kind in ("p", "h3"):
                out.append(block[1])
            elif kind == "ul":
                out += [f"- {item}" for item in block[1]]
            elif kind == "ol":
                out += block[1]
            elif kind == "table":
                out.append(tabulate(block[1], headers=block[2], tablefmt="simple"))
            elif kind == "pre":
                out += ["    " + line for line in block[1]]
    return "\n".join(out) + "\n"


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_markdown(sections: list) -> str:
    out = []
    for i, (title, blocks) in enumerate(sections):
        out.append(("# " if i == 0 else "\n## ") + title + "\n")
        for block in blocks:
            kind = block[0]
            if kind == "p":
                out.append(block[1] + "\n")
            elif kind == "h3":
                out.append(f"### {block[1]}\n")
            elif kind == "ul":
                out += [f"- {item}" for item in block[1]] + [""]
            elif kind == "ol":
                out += block[1] + [""]
            elif kind == "table":
                rows = [[_md_escape(str(c)) for c in r] for r in block[1]]
                out.append(tabulate(rows, headers=block[2], tablefmt="github") + "\n")
            elif kind == "pre":
                out += ["```"] + block[1] + ["```", ""]
    return "\n".join(out).rstrip() + "\n"
