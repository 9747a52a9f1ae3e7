"""Why not: for a line and a determination it did not get, the nearest miss of every rule that
could have concluded it — the first body literal that fails, and what would have satisfied it."""
from __future__ import annotations

from typing import Optional

from ..errors import InputError, quoted
from ..lang.contract import DETERMINATIONS
from ..lang.objects import Comparison, Const, Var, render_atom, render_value
from ..lang.unify import bind, value_of
from .proof import OP_SPELLING, Prover, compare
from .text import fill, fill_known

WHY_NOT_SCHEMA = "ionm-logic/why-not/v1"
MAX_ENVIRONMENTS = 64  # partial bindings followed per rule; plenty for one case
MAX_DEPTH = 3  # how far a failing derived literal is followed into the rules that could give it


def parse_target(text: str) -> tuple:
    if "=" not in text:
        raise InputError([("", f"--why-not takes CODE=DETERMINATION, e.g. 95938=medically_necessary; got {quoted(text)}")])
    code, determination = (part.strip() for part in text.split("=", 1))
    return code, determination


def _find_line(case, code: str) -> Optional[int]:
    if code.startswith("/services/"):
        try:
            index = int(code.split("/")[2])
        except ValueError:
            return None
        return index if 0 <= index < len(case.services) else None
    for i, service in enumerate(case.services):
        if service.code == code:
            return i
    return None


def check_target(case, target: str, source: str = "") -> tuple:
    """(line index, determination) that a CODE=DETERMINATION target names; InputError if none."""
    code, determination = parse_target(target)
    if determination not in DETERMINATIONS:
        raise InputError([("", f"unknown determination {quoted(determination)}; one of {', '.join(DETERMINATIONS)}")])
    index = _find_line(case, code)
    if index is None:
        raise InputError([("/services", f"no service line bills {code}")], source)
    return index, determination


def why_not(kb, posed, index: int, determination: str) -> dict:
    """The why-not/v1 report for line `index` of a posed case and a determination."""
    case, chosen, key = posed.case, posed.policy, posed.key
    line = posed.lines[index]
    rules = [r for r in kb.report_rules(chosen.pack) if kb.decls[r.head.pred].role == "finding"
             and isinstance(r.head.args[2], Const) and r.head.args[2].value == determination]
    results = []
    with kb.case_facts(list(posed.pointers)):
        prover = Prover(kb, key, posed.pointers, chosen.pack)
        for rule in rules:
            env0 = bind(rule.head.args[:2], (key, line))
            results.append(_nearest_miss(kb, prover, rule, env0 or {}, 0))
    # The nearest misses first: rules that hold, then those that got furthest into their body
    # (a time-line rule failing at "the line is a time line" says little about an SSEP line);
    # among equals, file order.
    results.sort(key=lambda r: (not r["holds"], -r.get("fails_at", 0)))
    holds = [r for r in results if r["holds"]]
    return {
        "schema": WHY_NOT_SCHEMA, "case_id": case.case_id, "policy": {"id": chosen.pack, "version": chosen.version},
        "line": {"pointer": line, "code": case.services[index].code}, "determination": determination,
        "concluded": bool(holds),
        "rules": results,
        "citations": {k: dict(kb.citations[k].fields) for k in sorted({c for r in results for c in r["citations"]})},
    }


def _nearest_miss(kb, prover, rule, env0: dict, depth: int) -> dict:
    envs = [env0]
    out = {"rule": rule.id, "text": fill_known(rule.template, env0, prover.case_key, prover.names),
           "citations": list(rule.citations),
           "source": {"file": rule.file, "line": rule.line}}
    for position, item in enumerate(rule.body):
        survivors = []
        if isinstance(item, Comparison):
            for env in envs:
                left, right = (value_of(t, env) for t in (item.left, item.right))
                if compare(item.op, left, right):
                    survivors.append(env)
            if not survivors:
                env = envs[0]
                left, right = (value_of(t, env) for t in (item.left, item.right))
                op = OP_SPELLING[item.op]
                return {**out, **_known_text(kb, prover, rule, env), "holds": False, "fails_at": position + 1,
                        "literal": f"{_show(item.left, env)} {op} {_show(item.right, env)}",
                        "reason": f"the comparison {_render(left)} {op} {_render(right)} does not hold",
                        "would_satisfy": []}
        elif item.negated:
            blocking = None
            for env in envs:
                values = tuple(value_of(a, env) for a in item.atom.args)
                if kb.ask(item.atom.pred, values):
                    blocking = blocking or values
                else:
                    survivors.append(env)
            if not survivors:
                proof = prover.prove(item.atom.pred, blocking)
                return {**out, **_known_text(kb, prover, rule, envs[0]), "holds": False, "fails_at": position + 1,
                        "literal": "not " + render_atom(item.atom.pred, blocking),
                        "reason": f"the rule needs this absent, but it holds: {proof.get('text', '')}",
                        "would_satisfy": [], "blocking_proof": proof}
        else:
            for env in envs:
                pattern = tuple(None if isinstance(v, Var) else v for v in (value_of(a, env) for a in item.atom.args))
                for row in kb.ask(item.atom.pred, pattern):
                    new = bind(item.atom.args, row, env)
                    if new is not None:
                        survivors.append(new)
            if not survivors:
                env = envs[0]
                shown = render_atom(item.atom.pred, [value_of(a, env) for a in item.atom.args])
                return {**out, **_known_text(kb, prover, rule, env), "holds": False, "fails_at": position + 1, "literal": shown,
                        "reason": f"no fact or rule gives {shown}",
                        "would_satisfy": _satisfiers(kb, prover, item.atom, env, depth)}
        envs = survivors[:MAX_ENVIRONMENTS]
    env = envs[0]
    return {**out, "holds": True, "text": fill(rule.template, env, prover.case_key, prover.names),
            "proof": prover.derivation_node(rule, env)}


def _known_text(kb, prover, rule, env) -> dict:
    """The rule's sentence with what the nearest miss had bound filled in."""
    return {"text": fill_known(rule.template, env, prover.case_key, prover.names)}


def _satisfiers(kb, prover, atom, env, depth) -> list:
    """What would make the literal hold: the case field; the fact itself, with the facts of the
    predicate the rules do state near it (differing in one argument) as what holds instead; or
    each rule of the pack whose head matches the literal, with that rule's own nearest miss (a
    few levels deep). Nothing already true is offered as what would make it hold."""
    decl = kb.decls[atom.pred]
    bound = {p: value_of(a, env) for p, a in zip(decl.params, atom.args)}
    known = {p: v for p, v in bound.items() if not isinstance(v, Var)}
    if decl.role == "case":
        return [{"kind": "case", "text": "the case file recorded that "
                 + fill_known(decl.template, known, prover.case_key, prover.names)}]
    out = []
    if any(f.atom.pred == atom.pred for f in kb.facts):
        values = [value_of(a, env) for a in atom.args]
        nearby = []
        for i in range(len(values)):
            pattern = tuple(None if j == i or isinstance(v, Var) else v for j, v in enumerate(values))
            for row in kb.ask(atom.pred, pattern):
                if row not in nearby and len(nearby) < 5:
                    nearby.append(row)
        out.append({"kind": "fact", "atom": render_atom(atom.pred, values),
                    "text": fill_known(decl.template, known, prover.case_key, prover.names),
                    "source": None,
                    "instead": [{"atom": render_atom(atom.pred, row),
                                 "source": ({"file": f.file, "line": f.line}
                                            if (f := kb.fact_index.get((atom.pred, row))) else None)}
                                for row in nearby]})
    values = [value_of(a, env) for a in atom.args]
    for rule in kb.rules_by_head.get(atom.pred, ()):
        if kb.ruleset.gate(rule) not in (None, prover.pack):
            continue  # a rule of another pack cannot conclude anything under this one
        head_env = bind(rule.head.args, values)
        if head_env is None:
            continue
        entry = {"kind": "rule", "rule": rule.id,
                 "text": fill_known(rule.template, head_env, prover.case_key, prover.names),
                 "citations": list(rule.citations), "source": {"file": rule.file, "line": rule.line}}
        if depth + 1 < MAX_DEPTH:
            miss = _nearest_miss(kb, prover, rule, head_env, depth + 1)
            if not miss["holds"]:
                entry["text"] = miss["text"]
                entry["miss"] = {k: miss[k] for k in ("fails_at", "literal", "reason", "would_satisfy")}
        out.append(entry)
    return out


def _show(term, env) -> str:
    return _render(value_of(term, env))


def _render(value) -> str:
    return value.name if isinstance(value, Var) else render_value(value)
