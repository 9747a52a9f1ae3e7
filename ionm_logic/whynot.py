"""Why not: for a line and a determination it did not get, the nearest miss of every rule that
could have concluded it — the first body literal that fails, and what would have satisfied it."""
from __future__ import annotations

from typing import Optional

from . import policy as policies
from .case import case_facts, check_vocabulary, line_id
from .decide import CASE_KEY, pointer_map
from .errors import InputError, quoted
from .proof import _COMPARE, _OP_SPELLING, Prover, fill, show
from .rulelang import SLOT, Comparison, Const, Var, render_atom, render_value

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


def why_not(kb, case, target: str, *, payer=None, as_of=None, source="") -> dict:
    from .checks import DETERMINATIONS

    code, determination = parse_target(target)
    if determination not in DETERMINATIONS:
        raise InputError([("", f"unknown determination {quoted(determination)}; one of {', '.join(DETERMINATIONS)}")])
    index = _find_line(case, code)
    if index is None:
        raise InputError([("/services", f"no service line bills {code}")], source)
    check_vocabulary(case, kb, source)
    chosen = policies.select(kb, payer or case.payer, as_of or case.date_of_service)
    pointers = pointer_map(case_facts(case, CASE_KEY, chosen.pack, chosen.version))
    line = line_id(index)
    rules = [r for r in kb.report_rules(chosen.pack) if kb.decls[r.head.pred].role == "finding"
             and isinstance(r.head.args[2], Const) and r.head.args[2].value == determination]
    results = []
    with kb.case_facts(list(pointers)):
        prover = Prover(kb, CASE_KEY, pointers, chosen.pack)
        for rule in rules:
            head = rule.head.args
            env0 = {a.name: v for a, v in ((head[0], CASE_KEY), (head[1], line)) if isinstance(a, Var)}
            results.append(_nearest_miss(kb, prover, rule, env0, 0))
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
    out = {"rule": rule.id, "text": _fill_known(rule.template, env0, kb.display_names),
           "citations": list(rule.citations),
           "source": {"file": rule.file, "line": rule.line}}
    for position, item in enumerate(rule.body):
        survivors = []
        if isinstance(item, Comparison):
            for env in envs:
                left, right = (_value(t, env) for t in (item.left, item.right))
                if _compare(item.op, left, right):
                    survivors.append(env)
            if not survivors:
                env = envs[0]
                left, right = (_value(t, env) for t in (item.left, item.right))
                op = _OP_SPELLING[item.op]
                return {**out, "holds": False, "fails_at": position + 1,
                        "literal": f"{_show(item.left, env)} {op} {_show(item.right, env)}",
                        "reason": f"the comparison {_render(left)} {op} {_render(right)} does not hold",
                        "would_satisfy": []}
        elif item.negated:
            blocking = None
            for env in envs:
                values = tuple(_value(a, env) for a in item.atom.args)
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
                pattern = tuple(_value(a, env) if not (isinstance(a, Var) and a.name not in env) else None
                                for a in item.atom.args)
                for row in kb.ask(item.atom.pred, pattern):
                    new = dict(env)
                    ok = True
                    for arg, value in zip(item.atom.args, row):
                        if isinstance(arg, Var):
                            if new.setdefault(arg.name, value) != value:
                                ok = False
                    if ok:
                        survivors.append(new)
            if not survivors:
                env = envs[0]
                shown = render_atom(item.atom.pred, [_value(a, env) if not (isinstance(a, Var) and a.name not in env)
                                                     else a for a in item.atom.args])
                return {**out, "holds": False, "fails_at": position + 1, "literal": shown,
                        "reason": f"no fact or rule gives {shown}",
                        "would_satisfy": _satisfiers(kb, prover, item.atom, env, depth)}
        envs = survivors[:MAX_ENVIRONMENTS]
    env = envs[0]
    return {**out, "holds": True, "text": fill(rule.template, env, CASE_KEY, kb.display_names),
            "proof": prover.derivation_node(rule, env)}


def _render_satisfiers(items, indent: str) -> list:
    lines = []
    for s in items:
        if s["kind"] == "case":
            lines.append(f"{indent}would hold if {s['text']}")
        elif s["kind"] == "fact":
            src = s["source"]
            lines.append(f"{indent}would hold with a fact such as {s['atom']}"
                         + (f" ({src['file']}:{src['line']})" if src else ""))
        else:
            lines.append(f"{indent}would hold if {s['rule']} concluded it ({s['source']['file']}:{s['source']['line']}): {s['text']}")
            miss = s.get("miss")
            if miss:
                lines.append(f"{indent}  {s['rule']} fails at body literal {miss['fails_at']}: {miss['literal']} — {miss['reason']}")
                lines += _render_satisfiers(miss["would_satisfy"], indent + "    ")
    return lines


def _satisfiers(kb, prover, atom, env, depth) -> list:
    """What would make the literal hold: the case field; facts of the predicate; or each rule
    whose head matches the literal, with that rule's own nearest miss (a few levels deep)."""
    decl = kb.decls[atom.pred]
    if decl.role == "case":
        return [{"kind": "case", "text": "the case file recorded that "
                 + fill(decl.template, {p: (_value(a, env) if not (isinstance(a, Var) and a.name not in env) else p)
                                        for p, a in zip(decl.params, atom.args)}, CASE_KEY, kb.display_names)}]
    out = []
    if any(f.atom.pred == atom.pred for f in kb.facts):
        # The nearest facts: those that differ from the literal in one argument.
        bound = [_value(a, env) for a in atom.args]
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
    values = [_value(a, env) for a in atom.args]
    for rule in kb.rules_by_head.get(atom.pred, ()):
        head_env = {}
        matches = True
        for arg, value in zip(rule.head.args, values):
            if isinstance(value, Var):
                continue
            if isinstance(arg, Const):
                matches = matches and arg.value == value
            elif head_env.setdefault(arg.name, value) != value:
                matches = False
        if not matches:
            continue
        entry = {"kind": "rule", "rule": rule.id, "text": _fill_known(rule.template, head_env, kb.display_names),
                 "citations": list(rule.citations), "source": {"file": rule.file, "line": rule.line}}
        if depth + 1 < MAX_DEPTH:
            miss = _nearest_miss(kb, prover, rule, head_env, depth + 1)
            if not miss["holds"]:
                entry["miss"] = {k: miss[k] for k in ("fails_at", "literal", "reason", "would_satisfy")}
        out.append(entry)
    return out


def _fill_known(template: str, env: dict, names: dict) -> str:
    """A template with the slots whose values are known filled, the others left as names."""
    return SLOT.sub(lambda m: show(env[m.group(1)], CASE_KEY, names) if m.group(1) in env else m.group(1), template)


def _value(term, env):
    return term.value if isinstance(term, Const) else env.get(term.name, term)


def _show(term, env) -> str:
    value = _value(term, env)
    return _render(value)


def _render(value) -> str:
    return value.name if isinstance(value, Var) else render_value(value)


def _compare(op, left, right) -> bool:
    try:
        return _COMPARE[op](left, right)
    except TypeError:  # an unbound variable, or an int against a string
        return False


def render_text(report: dict) -> str:
    lines = [f"Why not {report['determination']} for {report['line']['code']} ({report['line']['pointer']}) "
             f"under {report['policy']['id']} {report['policy']['version']}?"]
    if not report["rules"]:
        lines.append(f"No rule of {report['policy']['id']} concludes {report['determination']} for any line.")
    for r in report["rules"]:
        where = f"{r['source']['file']}:{r['source']['line']}"
        if r["holds"]:
            lines.append(f"- {r['rule']} ({where}) holds: {r['text']}")
            continue
        lines.append(f"- {r['rule']} ({where}) fails at body literal {r['fails_at']}: {r['literal']}")
        lines.append(f"    {r['reason']}")
        lines += _render_satisfiers(r["would_satisfy"], "    ")
        lines.append(f"    cites: {', '.join(r['citations'])}")
    verdict = "concluded" if report["concluded"] else "not concluded"
    lines.append(f"{report['determination']} is {verdict} for this line.")
    return "\n".join(lines) + "\n"
