"""Decide every service line of a case and assemble the ionm-logic/determination/v1 object."""
from __future__ import annotations

import datetime
import itertools
from dataclasses import dataclass, field
from typing import Optional

from . import policy as policies
from .checks import DETERMINATIONS
from .case import Case, case_facts, check_vocabulary, line_id, section_facts, undocumented_fields, with_documented
from .errors import pointer
from .proof import Prover, fill

OUTPUT_SCHEMA = "ionm-logic/determination/v1"
CASE_KEY = "case"
# The predicates whose proofs a report shows as its anatomical basis, in this order.
BASIS_PREDICATES = ("last_cord_level", "most_cranial_operated_level", "structure_at_risk")

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
    basis: list = field(default_factory=list)           # proofs of the anatomical basis


def collect(kb, rules: list, prover, key: str) -> Evaluation:
    """Group every derivation of the report rules by line (findings, considerations) or case."""
    out = Evaluation()
    for rule in rules:
        role = kb.decls[rule.head.pred].role
        for values, env in prover.derivations(rule):
            if values[0] != key:
                continue
            d = Derivation(rule, env, values)
            if role == "observation":
                out.observations.append(d)
            else:
                target = out.findings if role == "finding" else out.considerations
                target.setdefault(values[1], []).append(d)
    return out


def pointer_map(facts: list) -> dict:
    """(pred, values) -> the JSON pointer of the first field that gave the fact."""
    pointers = {}
    for f in facts:
        pointers.setdefault((f.pred, f.values), f.pointer)
    return pointers


def precedence(kb, pack: str) -> dict:
    return {det: rank for _p, det, rank in kb.values("determination_precedence", pack, None, None)}


def count_limits(kb) -> list:
    """The case-count limits the packs compare against (max_concurrent_cases)."""
    return sorted({n for _p, n in kb.values("max_concurrent_cases", None, None)})


def _rank_min(dets, ranks: dict) -> str:
    dets = list(dets)
    if not dets:
        return "undetermined"
    return min(dets, key=lambda det: (ranks.get(det, len(ranks) + 1), det))


def headline(derivations: list, ranks: dict) -> str:
    return _rank_min((d.values[2] for d in derivations), ranks)


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


def _item(d, key, with_determination: bool, names=None) -> dict:
    item = {}
    if with_determination:
        item["determination"] = d.values[2]
    item["rule"] = d.rule.id
    item["text"] = _sentence(fill(d.rule.template, d.env, key, names))
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
                       missing: bool = True, proofs: bool = True, source: str = "") -> tuple:
    """The determination/v1 object, and the proofs of the case's anatomical basis for reports.
    `proofs=False` leaves every proof None (batch --detail short drops them; benchmarks)."""
    check_vocabulary(case, kb, source)
    chosen = policies.select(kb, payer or case.payer, as_of or case.date_of_service,
                             pack_pointer="/payer", date_pointer="/date_of_service")
    ranks = precedence(kb, chosen.pack)
    rules = kb.report_rules(chosen.pack)
    pointers = pointer_map(case_facts(case, CASE_KEY, chosen.pack, chosen.version))
    line_ids = [line_id(i) for i in range(len(case.services))]
    with kb.case_facts(list(pointers)):
        prover = Prover(kb, CASE_KEY, pointers, chosen.pack)
        ev = collect(kb, rules, prover, CASE_KEY)
        if proofs:
            for d in itertools.chain(*ev.findings.values(), *ev.considerations.values(), ev.observations):
                d.proof = prover.derivation_node(d.rule, d.env)
            for pred in BASIS_PREDICATES:
                for values in prover.derived(pred, CASE_KEY):
                    ev.basis.append(prover.prove(pred, values))
        modalities = {line: m for _c, line, m in prover.derived("line_modality", CASE_KEY)}
        heads = {line: headline(ev.findings.get(line, []), ranks) for line in line_ids}
        gaps = missing_documentation(kb, case, chosen, ev, rules, heads, ranks, prover) if missing else {}
    lines = []
    for service, line in zip(case.services, line_ids):
        derivs = ev.findings.get(line, [])
        entry = {
            "pointer": line, "code": service.code, "units": service.units,
            "modality": modalities.get(line),
            "determination": heads[line],
            "findings": [_item(d, CASE_KEY, True, kb.display_names) for d in _unique_findings(derivs, ranks)],
            "considerations": [_item(d, CASE_KEY, False, kb.display_names)
                               for d in _unique_by_rule(ev.considerations.get(line, []))],
            "missing_documentation": gaps.get(line, []),
        }
        if not derivs:
            entry["reason"] = _undetermined_reason(kb, service, modalities.get(line), chosen.pack)
        lines.append(entry)
    observations = [_item(d, CASE_KEY, False, kb.display_names) for d in _unique_by_rule(ev.observations)]
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


def missing_documentation(kb, case: Case, chosen, ev: Evaluation, rules: list, heads: dict, ranks: dict,
                          prover) -> dict:
    """Per line, the undocumented fields (alone or in pairs) whose documentation would change its
    headline, found by re-deciding the case with each candidate value filled in.

    Runs while the case's own facts are asserted: each variant asserts and retracts only the
    facts it changes, and re-asks only the finding rules that depend on them."""
    fields = undocumented_fields(case, count_limits(kb))
    if not fields:
        return {}
    finding_rules = [r for r in rules if kb.decls[r.head.pred].role == "finding"]
    base_heads = {rule.index: [] for rule in finding_rules}
    for d in itertools.chain(*ev.findings.values()):
        base_heads[d.rule.index].append(d.values)

    base_sections = {}

    def delta(assignments):
        # Only the sections the assignments touch can change: compare their facts alone.
        variant_case = with_documented(case, assignments)
        add, remove = set(), set()
        for section in {path[0] for path, _value in assignments}:
            before = base_sections.get(section)
            if before is None:
                before = base_sections[section] = {(f.pred, f.values) for f in section_facts(case, CASE_KEY, section)}
            after = {(f.pred, f.values) for f in section_facts(variant_case, CASE_KEY, section)}
            add |= after - before
            remove |= before - after
        return add, remove, add | remove

    def per_line_of(rule_heads):
        per_line = {line: set() for line in heads}
        for rule in finding_rules:
            for values in rule_heads.get(rule.index, base_heads[rule.index]):
                if values[0] == CASE_KEY and values[1] in per_line:
                    per_line[values[1]].add((rule.id, values[2]))
        return per_line

    base_tables = prover.case_tables()

    def evaluate_rules(rules_to_ask, add, remove, touched):
        if not rules_to_ask:
            return {}
        with kb.fact_delta(add, remove):
            tables = kb.variant_tables(rules_to_ask, touched, chosen.pack, base_tables)
        return {rule.index: kb.head_tuples(rule, tables[rule.index]) for rule in rules_to_ask}

    def headlines(per_line):
        return {line: _rank_min((det for _r, det in found), ranks) for line, found in per_line.items()}

    # Singles: re-ask only the finding rules that depend on the facts a value changes.
    singles, single_heads, changed_by = {}, {}, {}
    for path, candidates in fields:
        for value in candidates:
            add, remove, changed = delta([(path, value)])
            touched = kb.touched_rules(changed)
            affected = [rule for rule in finding_rules if rule.index in touched]
            rule_heads = evaluate_rules(affected, add, remove, touched)
            singles[(path, value)] = headlines(per_line_of(rule_heads))
            single_heads[(path, value)] = rule_heads
            changed_by[(path, value)] = {rule.index for rule in affected}
    # Pairs: a rule that depends on neither field keeps its base answer and one that depends
    # on one of them keeps that single's answer (Datalog: a rule's answers depend only on the
    # facts it depends on); only rules depending on both are asked again. A value that no
    # finding rule depends on leaves the pair deciding as the other value alone: never minimal.
    pairs = {}
    for (p1, c1), (p2, c2) in itertools.combinations(fields, 2):
        for v1, v2 in itertools.product(c1, c2):
            if not changed_by[(p1, v1)] or not changed_by[(p2, v2)]:
                continue
            both = [rule for rule in finding_rules
                    if rule.index in changed_by[(p1, v1)] and rule.index in changed_by[(p2, v2)]]
            rule_heads = {**single_heads[(p1, v1)], **single_heads[(p2, v2)]}
            if both:
                add, remove, changed = delta([(p1, v1), (p2, v2)])
                rule_heads.update(evaluate_rules(both, add, remove, kb.touched_rules(changed)))
            pairs[((p1, v1), (p2, v2))] = headlines(per_line_of(rule_heads))

    out = {}
    for line in heads:
        entries, seen = [], set()
        for (path, value), new_heads in singles.items():
            new = new_heads[line]
            if new != heads[line] and (path, new) not in seen:
                seen.add((path, new))
                entries.append(_gap([(path, value)], new))
        for ((p1, v1), (p2, v2)), new_heads in pairs.items():
            new = new_heads[line]
            if new == heads[line] or (p1, p2, new) in seen:
                continue
            if singles[(p1, v1)][line] == new or singles[(p2, v2)][line] == new:
                continue  # not minimal: one of the two alone does it
            seen.add((p1, p2, new))
            entries.append(_gap([(p1, v1), (p2, v2)], new))
        out[line] = entries
    return out

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
        if node is None:
            return
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
    keys.discard(None)
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
