"""Why not: for a line and a determination it did not get, the nearest miss of every rule that
could have concluded it — the first body literal that fails, and what would have satisfied it."""
from __future__ import annotations

from typing import Optional

from ..errors import InputError
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
        raise InputError([("", f"--why-not takes CODE=DETERMINATION, e.g. 95938=medically_necessary; got {text!r}")])
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
        raise InputError([("", f"unknown determination {determination!r}; one of {', '.join(DETERMINATIONS)}")])
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
                return {**out, "holds": False, "fails_at": position + 1,
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
                return {**out, "holds": False, "fails_at": position + 1,
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
                return {**out, "holds": False, "fails_at": position + 1, "literal": shown,
                        "reason": f"no fact or rule gives {shown}",
                        "would_satisfy": _satisfiers(kb, prover, item.atom, env, depth)}
        envs = survivors[:MAX_ENVIRONMENTS]
    env = envs[0]
    return {**out, "holds": True, "text": fill(rule.template, env, prover.case_key, prover.names),
            "proof": prover.derivation_node(rule, env)}


def _satisfiers(kb, prover, atom, env, depth) -> list:
    """What would make the literal hold: the case field; facts of the predicate; or each rule
    whose head matches the literal, with that rule's own nearest miss (a few levels deep)."""
    decl = kb.decls[atom.pred]
    if decl.role == "case":
        known = {p: value_of(a, env) for p, a in zip(decl.params, atom.args)}
        return [{"kind": "case", "text": "the case file recorded that "
                 + fill(decl.template, {p: (p if isinstance(v, Var) else v) for p, v in known.items()},
                        prover.case_key, prover.names)}]
    out = []
    if any(f.atom.pred == atom.pred for f in kb.facts):
        # The nearest facts: those that differ from the literal in one argument.
        bound = [value_of(a, env) for a in atom.args]
        seen = []
        for i in range(len(bound)):
            pattern = tuple(None if j == i or isinstance(v, Var) else v for j, v in enumerate(bound))
            for values in kb.ask(atom.pred, pattern):
                if values not in seen and len(seen) < 5:
                    seen.append(values)
        for values in seen:
            fact = kb.fact_index.get((atom.pred, values))
            out.append({"kind": "fact", "atom": render_atom(atom.pred, values),
                        "source": {"file": fact.file, "line": fact.line} if fact else None})
    values = [value_of(a, env) for a in atom.args]
    for rule in kb.rules_by_head.get(atom.pred, ()):
        head_env = bind(rule.head.args, values)
        if head_env is None:
            continue
        entry = {"kind": "rule", "rule": rule.id,
                 "text": fill_known(rule.template, head_env, prover.case_key, prover.names),
                 "citations": list(rule.citations), "source": {"file": rule.file, "line": rule.line}}
        if depth + 1 < MAX_DEPTH:
            miss = _nearest_miss(kb, prover, rule, head_env, depth + 1)
            if not miss["holds"]:
                entry["miss"] = {k: miss[k] for k in ("fails_at", "literal", "reason", "would_satisfy")}
        out.append(entry)
    return out


def _show(term, env) -> str:
    return _render(value_of(term, env))


def _render(value) -> str:
    return value.name if isinstance(value, Var) else render_value(value)
