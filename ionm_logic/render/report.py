"""A decision as a reviewer's report: its sections, which text, Markdown and HTML lay out.

The report follows the shape of a written determination: headline, anatomical basis, a
summary table, analysis by code, evidence quality, limited exceptions, common pitfalls, final
determination and numbered references (numbered in order of first use). Every sentence comes
from a rule's or a predicate's template; nothing here knows medicine.
"""
from __future__ import annotations

from ..explain.text import sentence
from .nodes import proof_citations, proof_lines

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


def build(decision, detail: str = "short", trees: bool = False) -> list:
    """The report of a finished Decision as sections: (title, [blocks]); a block is ('p', text),
    ('h3', text), ('ul', [items]), ('ol', [items]), ('table', rows, headers), ('pre', lines) or,
    with `trees`, ('tree', label, proof) for every finding."""
    result, basis = decision.document, decision.basis
    refs = References(result["citations"])
    description = decision.procedure
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
                        f"(in force {window}); date of service {decision.date_of_service}."))
    sections.append((f"Medical Necessity Determination for IONM During {description}", blocks))

    if basis:
        items = [sentence(n["text"]) + refs.mark(proof_citations(n)) for n in basis]
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
                         + refs.mark(f["citations"] + proof_citations(f["proof"])) + f" ({f['rule']})")
        if not line["findings"]:
            items.append(line.get("reason", "No rule concludes on this line."))
        for c in line["considerations"]:
            items.append(f"Consideration: {c['text']}" + refs.mark(c["citations"]) + f" ({c['rule']})")
        for gap in line["missing_documentation"]:
            items.append(f"Missing documentation: {gap['text']}")
        heading = f"{line['code']} ({decision.line_names[line['pointer']]}) - {HEADLINES[line['determination']]}"
        analysis.append(("h3", heading))
        analysis.append(("ul", items))
        if trees:
            for f in line["findings"] + line["considerations"]:
                analysis.append(("tree", f"Proof: {f['rule']}", f["proof"]))
        elif detail == "full":
            for f in line["findings"]:
                analysis.append(("pre", [f"Proof of {f['rule']}:"] + proof_lines(f["proof"])))
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
