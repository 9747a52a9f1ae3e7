"""Decide every service line of a case and assemble the ionm-logic/determination/v1 object."""
from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass, field
from typing import Optional

from . import policy as policies
from .case import Case, case_facts, check_vocabulary, line_id, undocumented_fields, with_documented
from .errors import pointer
from .proof import Prover, fill

OUTPUT_SCHEMA = "ionm-logic/determination/v1"
CASE_KEY = "case"
# The predicates whose proofs a report shows as its anatomical basis, in this order.
BASIS_PREDICATES = ("last_cord_level", "most_cranial_operated_level", "structure_at_risk")
DETERMINATIONS = (
    "not_separately_reimbursable", "requirements_not_met", "documentation_insufficient",
    "not_medically_necessary", "insufficient_evidence", "medically_necessary",
)

# What a provider is asked to document for each undocumented field.
_ASK = {
    ("clinical", "myelopathy"): "whether the patient has myelopathy",
    ("clinical", "radiculopathy"): "whether the patient has radiculopathy",
    ("clinical", "neurological_deficit"): "whether the patient has a neurological deficit",
    ("clinical", "tethered_cord"): "whether the spinal cord is tethered",
    ("monitoring", "setting"): "where the interpreting professional was (in the room or remote)",
    ("monitoring", "technologist_in_room"): "whether a technologist was in the operating room",
    ("monitoring", "professional", "member_of_surgical_team"):
        "whether the interpreting professional was a member of the surgical team",
    ("monitoring", "professional", "real_time"): "whether the interpreting professional interpreted in real time",
    ("monitoring", "professional", "concurrent_cases"):
        "how many cases the interpreting physician covered at the same time",
    ("monitoring", "report", "findings"): "the monitoring findings (normal or changes)",
}


@dataclass
class Derivation:
    rule: object
    env: dict
    values: tuple
    proof: Optional[dict] = None


@dataclass
class Evaluation:
    """What the rules derive for one case: per line findings and considerations, case observations."""
    findings: dict = field(default_factory=dict)       # line -> [Derivation]
    considerations: dict = field(default_factory=dict)  # line -> [Derivation]
    observations: list = field(default_factory=list)
    modalities: dict = field(default_factory=dict)      # line -> modality or None
    basis: list = field(default_factory=list)           # proofs of the anatomical basis
    prover: Optional[Prover] = None


def evaluate(kb, facts: list, key: str, proofs: bool) -> Evaluation:
    """Assert the case facts, collect every derivation of the report predicates, and (with
    `proofs`) build their proofs before the facts are retracted."""
    pointers = {}
    for f in facts:
        pointers.setdefault((f.pred, f.values), f.pointer)
    out = Evaluation()
    with kb.case_facts(list(pointers)):
        prover = Prover(kb, key, pointers)
        for rule in kb.rules:
            role = kb.decls[rule.head.pred].role
            if role not in ("finding", "consideration", "observation"):
                continue
            for values, env in prover.derivations(rule):
                if values[0] != key:
                    continue
                d = Derivation(rule, env, values)
                if role == "observation":
                    out.observations.append(d)
                else:
                    target = out.findings if role == "finding" else out.considerations
                    target.setdefault(values[1], []).append(d)
        for (pred, values) in pointers:
            if pred == "billed_line":
                line = values[1]
                found = kb.values("line_modality", key, line, None)
                out.modalities[line] = found[0][2] if found else None
        if proofs:
            for d in itertools.chain(*out.findings.values(), *out.considerations.values(), out.observations):
                d.proof = prover.derivation_node(d.rule, d.env)
            for pred in BASIS_PREDICATES:
                for values in kb.values(pred, key, *([None] * (kb.decls[pred].arity - 1))):
                    out.basis.append(prover.prove(pred, values))
    out.prover = prover
    return out


def precedence(kb, pack: str) -> dict:
    return {det: rank for _p, det, rank in kb.values("determination_precedence", pack, None, None)}


def headline(derivations: list, ranks: dict) -> str:
    if not derivations:
        return "undetermined"
    return min((d.values[2] for d in derivations), key=lambda det: (ranks.get(det, len(ranks) + 1), det))


def _unique_findings(derivations: list, ranks: dict) -> list:
    """One finding per (rule, determination): the least witness speaks for the rule."""
    seen, out = set(), []
    for d in sorted(derivations, key=lambda d: (ranks.get(d.values[2], 99), d.rule.index)):
        if (d.rule.id, d.values[2]) not in seen:
            seen.add((d.rule.id, d.values[2]))
            out.append(d)
    return out


def _unique_by_rule(derivations: list) -> list:
    seen, out = set(), []
    for d in sorted(derivations, key=lambda d: d.rule.index):
        if d.rule.id not in seen:
            seen.add(d.rule.id)
            out.append(d)
    return out


def _item(d, key, with_determination: bool) -> dict:
    item = {}
    if with_determination:
        item["determination"] = d.values[2]
    item["rule"] = d.rule.id
    item["text"] = _sentence(fill(d.rule.template, d.env, key))
    item["citations"] = list(d.rule.citations)
    item["proof"] = d.proof
    return item


def _sentence(text: str) -> str:
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def explain(kb, case: Case, **options) -> dict:
    """The determination/v1 object for a validated case."""
    return explain_with_basis(kb, case, **options)[0]


def explain_with_basis(kb, case: Case, *, payer: Optional[str] = None, as_of: Optional[datetime.date] = None,
                       missing: bool = True, source: str = "") -> tuple:
    """The determination/v1 object, and the proofs of the case's anatomical basis for reports."""
    check_vocabulary(case, kb, source)
    day = as_of or case.date_of_service
    chosen = policies.select(kb, payer or case.payer, day,
                             pack_pointer="/payer", date_pointer="/date_of_service")
    facts = case_facts(case, CASE_KEY, chosen.pack, chosen.version)
    ev = evaluate(kb, facts, CASE_KEY, proofs=True)
    ranks = precedence(kb, chosen.pack)
    lines = []
    heads = {}
    for i, service in enumerate(case.services):
        line = line_id(i)
        derivs = ev.findings.get(line, [])
        heads[line] = headline(derivs, ranks)
        entry = {
            "pointer": line, "code": service.code, "units": service.units,
            "modality": ev.modalities.get(line),
            "determination": heads[line],
            "findings": [_item(d, CASE_KEY, True) for d in _unique_findings(derivs, ranks)],
            "considerations": [_item(d, CASE_KEY, False) for d in _unique_by_rule(ev.considerations.get(line, []))],
            "missing_documentation": [],
        }
        if not derivs:
            entry["reason"] = _undetermined_reason(kb, service, ev.modalities.get(line), chosen.pack)
        lines.append(entry)
    if missing:
        for line_entry, gaps in zip(lines, missing_documentation(kb, case, chosen, heads)):
            line_entry["missing_documentation"] = gaps
    observations = [_item(d, CASE_KEY, False) for d in _unique_by_rule(ev.observations)]
    result = {
        "schema": OUTPUT_SCHEMA,
        "case_id": case.case_id,
        "payer": chosen.pack,
        "policy": {"id": chosen.pack, "version": chosen.version, "in_force": chosen.window()},
        "knowledge_base": {"sha256": kb.sha256, "rules": kb.rule_count(), "facts": kb.fact_count()},
        "lines": lines,
        "observations": observations,
        "overall": overall(lines, chosen),
    }
    result["citations"] = citations_used(kb, result, ev.basis)
    return result, ev.basis


def _undetermined_reason(kb, service, modality, pack) -> str:
    if modality is None:
        return (f"No rule concludes: code {service.code} is not a code the knowledge base knows, "
                f"and the line names no modality.")
    return (f"No rule of {pack} concludes on {modality.replace('_', ' ')} (code {service.code}) "
            f"for this procedure: the policy has no clause for it.")


def overall(lines: list, chosen) -> dict:
    heads = [l["determination"] for l in lines]
    n = len(heads)
    mn = heads.count("medically_necessary")
    if all(h == "undetermined" for h in heads):
        det = "undetermined"
    elif mn == n:
        det = "medically_necessary"
    elif mn == 0:
        det = "not_medically_necessary"
    else:
        det = "partial"
    counts = ", ".join(f"{heads.count(d)} {d.replace('_', ' ')}" for d in DETERMINATIONS + ("undetermined",)
                       if heads.count(d))
    text = (f"{mn} of {n} billed IONM line{'s' if n != 1 else ''} medically necessary under {chosen.pack} "
            f"(version {chosen.version}): {counts}.")
    return {"determination": det, "text": text}


def missing_documentation(kb, case: Case, chosen, heads: dict) -> list:
    """Per line, the undocumented fields (alone or in pairs) whose documentation would change its
    headline, found by re-deciding the case with each candidate value filled in."""
    fields = undocumented_fields(case)
    ranks = precedence(kb, chosen.pack)
    line_ids = [line_id(i) for i in range(len(case.services))]

    def decide_with(assignments):
        variant = with_documented(case, assignments)
        facts = case_facts(variant, CASE_KEY, chosen.pack, chosen.version)
        ev = evaluate(kb, facts, CASE_KEY, proofs=False)
        findings = {l: frozenset((d.rule.id, d.values[2]) for d in ev.findings.get(l, [])) for l in line_ids}
        return {l: headline(ev.findings.get(l, []), ranks) for l in line_ids}, findings

    singles = {}
    changed_fields = []
    base_findings = evaluate_findings(kb, case, chosen, line_ids) if fields else None
    for path, candidates in fields:
        moved = False
        for value in candidates:
            heads_v, findings_v = decide_with([(path, value)])
            singles[(path, value)] = heads_v
            if findings_v != base_findings:
                moved = True
        if moved:
            changed_fields.append((path, candidates))
    pairs = {}
    for (p1, c1), (p2, c2) in itertools.combinations(changed_fields, 2):
        for v1, v2 in itertools.product(c1, c2):
            pairs[((p1, v1), (p2, v2))] = decide_with([(p1, v1), (p2, v2)])[0]

    out = []
    for line in line_ids:
        entries, seen = [], set()
        for (path, value), heads_v in singles.items():
            new = heads_v[line]
            if new != heads[line] and (path, new) not in seen:
                seen.add((path, new))
                entries.append(_gap([(path, value)], new))
        for ((p1, v1), (p2, v2)), heads_v in pairs.items():
            new = heads_v[line]
            if new == heads[line] or (p1, p2, new) in seen:
                continue
            if singles[(p1, v1)][line] == new or singles[(p2, v2)][line] == new:
                continue  # not minimal: one of the two alone does it
            seen.add((p1, p2, new))
            entries.append(_gap([(p1, v1), (p2, v2)], new))
        out.append(entries)
    return out


def evaluate_findings(kb, case, chosen, line_ids) -> dict:
    facts = case_facts(case, CASE_KEY, chosen.pack, chosen.version)
    ev = evaluate(kb, facts, CASE_KEY, proofs=False)
    return {l: frozenset((d.rule.id, d.values[2]) for d in ev.findings.get(l, [])) for l in line_ids}


def _gap(assignments: list, new: str) -> dict:
    parts = []
    for path, value in assignments:
        shown = "true" if value is True else "false" if value is False else str(value).replace("_", " ")
        parts.append(f"{_ASK[path]}; if {shown}")
    text = ("Document " + ", and ".join(parts)
            + f", this line would be {new.replace('_', ' ')}.")
    return {"fields": [{"pointer": pointer(*path), "value": value} for path, value in assignments],
            "would_become": new, "text": text}


def citations_used(kb, result: dict, extra_nodes: list = ()) -> dict:
    keys = set()

    def walk(node):
        keys.update(node.get("citations") or [])
        for child in node.get("children") or []:
            walk(child)

    for line in result["lines"]:
        for item in line["findings"] + line["considerations"]:
            keys.update(item["citations"])
            walk(item["proof"])
    for item in result["observations"]:
        keys.update(item["citations"])
        walk(item["proof"])
    for node in extra_nodes:
        walk(node)
    out = {}
    for key in sorted(keys):
        record = dict(kb.citations[key].fields)
        out[key] = record
    return out


def exercised_rules(kb, case: Case, *, payer: Optional[str] = None, as_of: Optional[datetime.date] = None) -> set:
    """Ids of the rules whose bodies have a witness for this case (rule coverage)."""
    chosen = policies.select(kb, payer or case.payer, as_of or case.date_of_service)
    facts = {(f.pred, f.values): None for f in case_facts(case, CASE_KEY, chosen.pack, chosen.version)}
    with kb.case_facts(list(facts)):
        return {rule.id for rule in kb.rules if kb.rule_table(rule)}
