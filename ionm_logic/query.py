"""Answer an ad hoc query written in the rule language, optionally against a case."""
from __future__ import annotations

from contextlib import nullcontext

from . import policy as policies
from .case import case_facts, check_vocabulary
from .decide import CASE_KEY
from .errors import InputError
from .proof import Prover
from .report import _proof_lines
from .rulelang import RuleError, Var, render_atom
from .ruleparse import parse_query


def run_query(kb, text: str, case=None, why: bool = False, source: str = ""):
    """(variable names, answer rows, [(label, proof lines)]) for a query such as level_rank(L, 24)."""
    try:
        atom = parse_query(text)
    except RuleError as exc:
        raise InputError([("", f"query, column {exc.column}: {exc.message}")]) from None
    decl = kb.decls.get(atom.pred)
    if decl is None:
        raise InputError([("", f"unknown predicate {atom.pred}; it is not declared in the rules")])
    if len(atom.args) != decl.arity:
        raise InputError([("", f"{atom.pred} takes {decl.arity} argument(s): {atom.pred}({', '.join(decl.params)})")])
    facts, pointers, chosen = [], {}, None
    if case is not None:
        check_vocabulary(case, kb, source)
        chosen = policies.select(kb, case.payer, case.date_of_service)
        facts = case_facts(case, CASE_KEY, chosen.pack, chosen.version)
        pointers = {}
        for f in facts:
            pointers.setdefault((f.pred, f.values), f.pointer)
    names = []
    for arg in atom.args:
        if isinstance(arg, Var) and not arg.name.startswith("_Anon") and arg.name not in names:
            names.append(arg.name)
    pattern = tuple(None if isinstance(a, Var) else a.value for a in atom.args)
    context = kb.case_facts(list(pointers)) if case is not None else nullcontext()
    rows, proofs = [], []
    with context:
        prover = Prover(kb, CASE_KEY, pointers, chosen.pack if case is not None else None)
        for values in kb.ask(atom.pred, pattern):
            env, ok = {}, True
            for arg, value in zip(atom.args, values):
                if isinstance(arg, Var) and not arg.name.startswith("_Anon"):
                    if env.setdefault(arg.name, value) != value:
                        ok = False
            if not ok:
                continue
            row = [env[n] for n in names]
            if row in rows:
                continue
            rows.append(row)
            if why:
                proofs.append((render_atom(atom.pred, values), _proof_lines(prover.prove(atom.pred, values))))
    return names, rows, proofs
