"""Decide every service line of a posed case and assemble the ionm-logic/determination/v1 object.

The decision is finished here: what reports show besides the document (the anatomical basis,
each line's name, the procedure and date) travels in the Decision, so no renderer asks the
knowledge base anything.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Optional

from ..lang.contract import (BASIS_PREDICATES, CODE_DESCRIPTION, DETERMINATIONS, LINE_MODALITY, LINE_NOT_ENCODED,
                             MODALITY_NAME, UNDETERMINED)
from .headline import headline, precedence
from .missing import missing_documentation
from .proof import Prover
from .text import VALUE_LIMIT, fill, plain, sentence

OUTPUT_SCHEMA = "ionm-logic/determination/v1"


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


@dataclass
class Decision:
    """A finished decision: the determination/v1 document and what reports show besides it.

    Unpacks as (document, basis) for callers of the earlier two-value API."""
    document: dict
    basis: list                 # proofs of the anatomical basis, in BASIS_PREDICATES order
    procedure: str              # the procedure as reports name it
    date_of_service: str        # ISO date of the case (not the --as-of date)
    line_names: dict            # line pointer -> "modality name; code description"
    as_of: Optional[str] = None  # ISO date that picked the policy version, when --as-of gave one
    names: dict = field(default_factory=dict)  # value -> how sentences name it (display names)

    def __iter__(self):
        return iter((self.document, self.basis))


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


def _unique_findings(kb, derivations: list, ranks: dict) -> list:
    """One finding per (rule, determination): the least witness speaks for the rule."""
    seen, out = set(), []
    for d in sorted(derivations, key=lambda d: (ranks.get(d.values[2], 99), kb.index(d.rule))):
        if (d.rule.id, d.values[2]) not in seen:
            seen.add((d.rule.id, d.values[2]))
            out.append(d)
    return out


def _unique_by_rule(kb, derivations: list) -> list:
    seen, out = set(), []
    for d in sorted(derivations, key=lambda d: kb.index(d.rule)):
        if d.rule.id not in seen:
            seen.add(d.rule.id)
            out.append(d)
    return out


def _item(d, key, with_determination: bool, names=None) -> dict:
    item = {}
    if with_determination:
        item["determination"] = d.values[2]
    item["rule"] = d.rule.id
    item["text"] = sentence(fill(d.rule.template, d.env, key, names))
    item["citations"] = list(d.rule.citations)
    item["proof"] = d.proof
    return item


def decide(kb, posed, *, missing: bool = True, proofs: bool = True) -> Decision:
    """The Decision for a posed case (case.pose). `proofs=False` (benchmarks only) leaves every
    proof out: not a determination/v1 object."""
    chosen, key, case = posed.policy, posed.key, posed.case
    ranks = precedence(kb, chosen.pack)
    rules = kb.report_rules(chosen.pack)
    with kb.case_facts(list(posed.pointers)):
        prover = Prover(kb, key, posed.pointers, chosen.pack)
        ev = collect(kb, rules, prover, key)
        names = prover.names
        if proofs:
            for d in itertools.chain(*ev.findings.values(), *ev.considerations.values(), ev.observations):
                d.proof = prover.derivation_node(d.rule, d.env)
            for pred in BASIS_PREDICATES:
                for values in prover.derived(pred, key):
                    ev.basis.append(prover.prove(pred, values))
        modalities = {line: m for _c, line, m in prover.derived(LINE_MODALITY, key)}
        unencoded = _unencoded_clauses(kb, prover, key)
        heads = {line: headline(ev.findings.get(line, []), ranks) for line in posed.lines}
        gaps = missing_documentation(kb, posed, ev, rules, heads, ranks, prover) if missing else {}
    lines = []
    for service, line in zip(case.services, posed.lines):
        derivs = ev.findings.get(line, [])
        entry = {
            "pointer": line, "code": service.code, "units": service.units,
            "modality": modalities.get(line),
            "determination": heads[line],
            "findings": [_item(d, key, True, names) for d in _unique_findings(kb, derivs, ranks)],
            "considerations": [_item(d, key, False, names)
                               for d in _unique_by_rule(kb, ev.considerations.get(line, []))],
            "missing_documentation": gaps.get(line, []),
        }
        if not derivs:
            entry["reason"] = (" ".join(unencoded.get(line, ()))
                               or _undetermined_reason(service, modalities.get(line), chosen.pack))
        lines.append(entry)
    observations = [_item(d, key, False, names) for d in _unique_by_rule(kb, ev.observations)]
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
    return Decision(result, ev.basis, **report_details(kb, case, result),
                    as_of=posed.as_of.isoformat() if posed.as_of else None)


def report_details(kb, case, document: dict) -> dict:
    """What reports show besides the document: the procedure's name, the date of service and
    each line's name (its modality's name and its code's description)."""
    names = {}
    for line in document["lines"]:
        parts = []
        modality = line.get("modality")
        if modality:
            found = kb.values(MODALITY_NAME, modality, None)
            parts.append(found[0][1] if found else modality)
        described = kb.values(CODE_DESCRIPTION, line["code"], None)
        if described:
            parts.append(described[0][1])
        names[line["pointer"]] = "; ".join(parts) or "unknown code"
    shown = {m: kb.display_names[m] for m in {line.get("modality") for line in document["lines"]}
             if m in kb.display_names}
    return {"procedure": case.procedure.description or case.procedure.kind.replace("_", " "),
            "date_of_service": case.date_of_service.isoformat(), "line_names": names, "names": shown}


def _unencoded_clauses(kb, prover, key) -> dict:
    """Line -> the sentences (from the rules' templates) naming each clause the pack does not
    encode for it: an undecided line's reason (line_not_encoded)."""
    out = {}
    for rule in kb.rules_by_head.get(LINE_NOT_ENCODED, ()):
        for values, env in prover.derivations(rule):
            if values[0] == key:
                text = sentence(fill(rule.template, env, key, prover.names))
                if text not in out.setdefault(values[1], []):
                    out[values[1]].append(text)
    return out


def _undetermined_reason(service, modality, pack) -> str:
    code = plain(service.code, VALUE_LIMIT)
    if modality is None:
        return (f"No rule concludes: code {code} is not a code the knowledge base knows, "
                f"and the line names no modality.")
    return (f"No rule of {pack} concludes on {modality.replace('_', ' ')} (code {code}) "
            f"for this procedure: the policy has no clause for it.")


def overall(lines: list, chosen) -> dict:
    heads = [l["determination"] for l in lines]
    n = len(heads)
    mn = heads.count("medically_necessary")
    if all(h == UNDETERMINED for h in heads):
        det = UNDETERMINED
    elif mn == n:
        det = "medically_necessary"
    elif mn == 0:
        det = "not_medically_necessary"
    else:
        det = "partial"
    counts = ", ".join(f"{heads.count(d)} {d.replace('_', ' ')}" for d in DETERMINATIONS + (UNDETERMINED,)
                       if heads.count(d))
    text = (f"{mn} of {n} billed IONM line{'s' if n != 1 else ''} medically necessary under {chosen.pack} "
            f"(version {chosen.version}): {counts}.")
    return {"determination": det, "text": text}


def citations_used(kb, result: dict, extra_nodes: list = ()) -> dict:
    keys, walked = set(), set()

    def walk(node):
        # Proofs share subtrees (the prover's memo): one walked already added its keys.
        if node is None or id(node) in walked:
            return
        walked.add(id(node))
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
    return {key: dict(kb.citations[key].fields) for key in sorted(keys)}


def exercised_rules(kb, posed) -> set:
    """Ids of the rules whose bodies have a witness for this case (rule coverage)."""
    with kb.case_facts(list(posed.pointers)):
        return {rule.id for rule in kb.rules if kb.rule_table(rule)}
