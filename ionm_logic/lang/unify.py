"""Matching rule atoms with values: the one unification the engine, proofs and queries share."""
from __future__ import annotations

from .objects import Const, Var


def bind(args, values, env=None):
    """`env` extended so that the atom arguments `args` match `values`; None when they cannot.

    A constant argument must equal its value; a variable takes its value, or must already hold
    it. A value that is itself a Var (not known yet) matches anything and binds nothing."""
    out = dict(env) if env else {}
    for arg, value in zip(args, values):
        if isinstance(value, Var):
            continue
        if isinstance(arg, Const):
            if arg.value != value:
                return None
        elif arg.name in out:
            if out[arg.name] != value:
                return None
        else:
            out[arg.name] = value
    return out


def ground(args, env) -> tuple:
    """The values of atom arguments under a full environment."""
    return tuple([a.value if isinstance(a, Const) else env[a.name] for a in args])


def value_of(term, env):
    """A term's value under a partial environment: the Var itself while it is unbound."""
    return term.value if isinstance(term, Const) else env.get(term.name, term)
