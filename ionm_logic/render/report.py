"""A decision as a reviewer's report: its sections, which text, Markdown and HTML lay out.

The report follows the shape of a written determination: headline, anatomical basis, a
summary table, analysis by code, evidence quality, limited exceptions, common pitfalls, final
determination and numbered references (numbered in order of first use). Every sentence comes
from a rule's or a predicate's template; nothing here knows medicine.
"""
from __future__ import annotations

import re

from ..explain.text import VALUE_LIMIT, inline, plain, sentence
from ..lang.contract import UNDETERMINED
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


def line_labels(lines: list) -> dict:
    """line pointer -> how prose names the line: its code, with the line's number when the case
    bills that code on more than one line ('95938 (line 4)')."""
    codes = [line["code"] for line in lines]
    out = {}
    for n, line in enumerate(lines, 1):
        code = plain(line["code"], VALUE_LIMIT)
        out[line["pointer"]] = f"{code} (line {n})" if codes.count(line["code"]) > 1 else code
    return out


def words(value, names=None) -> str:
    """A vocabulary value as a reader sees it: its display name, or its words ('not medically
    necessary' for not_medically_necessary), never its snake_case spelling."""
    if value is None:
        return "-"
    value = str(value)
    if names and value in names:
        return names[value]
    return plain(value.replace("_", " ") if re.fullmatch(r"[a-z][a-z0-9_]*", value) else value, VALUE_LIMIT)


def labelled(label: str, text: str) -> str:
    """'Label: text', the text continuing the sentence the label opens."""
    return f"{label}: {inline(text)}"


def verdict(overall: dict, lines: list, labels: dict) -> str:
    """The case's determination in words, saying which lines no rule decides when there are any."""
    head = HEADLINES[overall["determination"]]
    open_lines = [labels[l["pointer"]] for l in lines if l["determination"] == UNDETERMINED]
    if not open_lines or overall["determination"] == UNDETERMINED:
        return head
    n = len(open_lines)
    return (f"{head} on the lines decided, and UNDETERMINED for {n} of {len(lines)} line{'s' if len(lines) != 1 else ''}, "
            f"{', '.join(open_lines)}: no rule concludes on {'it' if n == 1 else 'them'}, so a reviewer must "
            f"decide {'it' if n == 1 else 'them'}")


def build(decision, detail: str = "short", trees: bool = False) -> list:
    """The report of a finished Decision as sections: (title, [blocks]); a block is ('p', text),
    ('h3', text), ('ul', [items]), ('ol', [items]), ('table', rows, headers), ('pre', lines),
    ('status', determination, text); a table may carry a determination per row, an h3 its
    line's determination; with, with `trees`, ('tree', label, proof) for every finding."""
    result, basis = decision.document, decision.basis
    refs = References(result["citations"])
    description = plain(decision.procedure, VALUE_LIMIT)
    overall = result["overall"]
    labels = line_labels(result["lines"])
    case_id = plain(result["case_id"], VALUE_LIMIT)
    sections = []

    # Headline: the overall determination, then one bullet per sentence that decided lines'
    # headlines, the lines it decided first; lines group only where the filled-in sentence is
    # the same, and a code billed on two lines is two bullets. Undetermined lines say so.
    deciding = {}
    for line in result["lines"]:
        code = labels[line["pointer"]]
        twice = code != plain(line["code"], VALUE_LIMIT)
        if not line["findings"]:
            key = (UNDETERMINED, line.get("reason", ""), line["pointer"])
            deciding.setdefault(key, [line.get("reason", "no rule concludes on this line"), [], []])
            deciding[key][1].append(code)
            continue
        for f in line["findings"]:
            if f["determination"] == line["determination"]:
                key = (f["determination"], f["text"], line["pointer"] if twice else None)
                entry = deciding.setdefault(key, [f["text"], [], f["citations"]])
                if code not in entry[1]:
                    entry[1].append(code)
    lead = f"IONM during {inline(description)} is {verdict(overall, result['lines'], labels)}. {overall['text']}"
    blocks = [("status", overall["determination"], lead)]
    ranked = sorted(deciding.values(), key=lambda entry: -len(entry[1]))
    if ranked:
        blocks.append(("ul", [f"{', '.join(codes)}: {sentence(text)}"
                              + refs.mark(cites) for text, codes, cites in ranked]))
    policy = result["policy"]
    window = f"{policy['in_force'][0]} to {policy['in_force'][1] or 'open'}"
    if decision.as_of:
        decided = (f"the version in force on {decision.as_of}, the date given with --as-of, which decided "
                   f"in place of the case's date of service ({decision.date_of_service})")
    else:
        decided = f"the version in force on the case's date of service, {decision.date_of_service}"
    blocks.append(("p", f"Case {case_id}; payer policy {policy['id']}, version {policy['version']} "
                        f"(in force {window}): {decided}."))
    sections.append((f"Medical Necessity Determination for IONM During {description}", blocks))

    if basis:
        items = [sentence(n["text"]) + refs.mark(proof_citations(n)) for n in basis]
        sections.append(("Anatomical Basis", [("ul", items)]))

    rows = []
    for n, line in enumerate(result["lines"], 1):
        rules = ", ".join(f["rule"] for f in line["findings"]) or "-"
        rows.append([n, plain(line["code"], VALUE_LIMIT), words(line.get("modality"), decision.names), line["units"],
                     words(line["determination"]), rules])
    sections.append(("Summary", [("table", rows, ["Line", "Code", "Modality", "Units", "Determination", "Rules"],
                                  [line["determination"] for line in result["lines"]])]))

    analysis = []
    for line in result["lines"]:
        items = []
        for f in line["findings"]:
            items.append(labelled(HEADLINES[f["determination"]].capitalize(), f["text"])
                         + refs.mark(f["citations"] + proof_citations(f["proof"])) + f" ({f['rule']})")
        if not line["findings"]:
            items.append(sentence(line.get("reason", "no rule concludes on this line")))
        for c in line["considerations"]:
            items.append(labelled("Consideration", c["text"]) + refs.mark(c["citations"]) + f" ({c['rule']})")
        for gap in line["missing_documentation"]:
            items.append(labelled("Missing documentation", gap["text"]))
        heading = (f"{labels[line['pointer']]} ({plain(decision.line_names[line['pointer']])}) - "
                   f"{HEADLINES[line['determination']]}")
        analysis.append(("h3", heading, line["determination"]))
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

    # Like the headline, considerations group only where the filled-in sentence is the same.
    exceptions, seen = [], {}
    for line in result["lines"]:
        for c in line["considerations"]:
            seen.setdefault((c["rule"], c["text"]), (c, []))[1].append(labels[line["pointer"]])
    for c, codes in seen.values():
        which = f"line{'s' if len(codes) > 1 else ''} {', '.join(codes)}"
        exceptions.append(f"{sentence(c['text']).rstrip('.')} ({which})." + refs.mark(c["citations"]))
    if exceptions:
        sections.append(("Limited Exceptions", [("ul", exceptions)]))

    if result["observations"]:
        items = [o["text"] + refs.mark(o["citations"]) for o in result["observations"]]
        sections.append(("Common Pitfalls in This Case", [("ul", items)]))

    final = [f"Final determination: {verdict(overall, result['lines'], labels)}. {overall['text']}"]
    by_head = {}
    for line in result["lines"]:
        by_head.setdefault(line["determination"], []).append(labels[line["pointer"]])
    for det, codes in by_head.items():
        final.append(f"{HEADLINES[det].capitalize()}: {', '.join(codes)}.")
    if exceptions:
        final.append(f"{len(seen)} limited exception{'s' if len(seen) != 1 else ''} above "
                     "(shown for the reviewer) do not change these determinations under the policy.")
    sections.append(("Final Determination", [("status", overall["determination"], " ".join(final))]))
    sections.append(("References", [("ol", refs.entries())]))
    return sections
