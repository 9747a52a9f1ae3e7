"""Answer an ad hoc query written in the rule language, optionally against a posed case."""
from __future__ import annotations

from contextlib import nullcontext

from ..errors import InputError
from ..lang.objects import RuleError, Var, is_anonymous, render_atom
from ..lang.unify import bind
from .proof import Prover

QUERY_KEY = "case"  # the case value when no case is posed (no case fact uses it then)


def parse_query_text(kb, text: str):
    """The query atom, checked against the declarations; InputError naming the problem."""
    from ..lang.parse import parse_query

    try:
        atom = parse_query(text)
    except RuleError as exc:
        raise InputError([("", f"query, column {exc.column}: {exc.message}")]) from None
    decl = kb.decls.get(atom.pred)
    if decl is None:
        raise InputError([("", f"unknown predicate {atom.pred}; it is not declared in the rules")])
    if len(atom.args) != decl.arity:
        raise InputError([("", f"{atom.pred} takes {decl.arity} argument(s): {atom.pred}({', '.join(decl.params)})")])
    return atom


def run_query(kb, text: str, posed=None, why: bool = False):
    """(variable names, answer rows, [(answer atom, proof node)]) for a query such as
    level_rank(L, 24); with `posed`, the case's facts are asserted while asking."""
    atom = parse_query_text(kb, text)
    names = []
    for arg in atom.args:
        if isinstance(arg, Var) and not is_anonymous(arg.name) and arg.name not in names:
            names.append(arg.name)
    pattern = tuple(None if isinstance(a, Var) else a.value for a in atom.args)
    pointers = posed.pointers if posed is not None else {}
    context = kb.case_facts(list(pointers)) if posed is not None else nullcontext()
    rows, proofs = [], []
    with context:
        prover = Prover(kb, posed.key if posed is not None else QUERY_KEY, pointers,
                        posed.policy.pack if posed is not None else None)
        for values in kb.ask(atom.pred, pattern):
            env = bind(atom.args, values)
            if env is None:
                continue
            row = [env[n] for n in names]
            if row in rows:
                continue
            rows.append(row)
            if why:
                proofs.append((render_atom(atom.pred, values), prover.prove(atom.pred, values)))
    return names, rows, proofs
