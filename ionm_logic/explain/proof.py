"""Rebuild the proof of a derived atom by replaying the rules against the loaded case.

For a ground atom: a case fact becomes a `case` leaf (with its JSON pointer), a rule-file fact
a `fact` leaf (with its file and line); otherwise the first rule in file order whose head
matches and whose body has a witness gives a `rule` node, built from the least witness: each
positive body literal is proved in turn, a negated one becomes an `absent` leaf and a
comparison a `builtin` leaf. Proofs of atoms no case fact can reach are memoized on the
knowledge base, shared by every line and every case.
"""
from __future__ import annotations

import operator

from ..engine.ruleset import sort_key
from ..lang.contract import BILLED_LINE
from ..lang.objects import Comparison, Const, render_atom, render_value
from ..lang.unify import bind, ground
from .text import fill

# How rule text spells each comparison (the objects hold pyDatalog's spelling).
OP_SPELLING = {"<": "<", "<=": "=<", ">": ">", ">=": ">=", "==": "=", "!=": "!="}
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge, "==": operator.eq,
            "!=": operator.ne}


def compare(op: str, left, right) -> bool:
    """Whether a comparison holds; False when its values cannot be compared (an int against a
    string, or an unbound variable)."""
    try:
        return _COMPARE[op](left, right)
    except TypeError:
        return False


def line_names(pointers: dict) -> dict:
    """line id -> how a sentence names it after the word 'line': '2 (95939)'."""
    names = {}
    for pred, values in pointers:
        if pred == BILLED_LINE:
            _case, line, code = values
            names[line] = f"{int(line.rsplit('/', 1)[1]) + 1} ({code})"
    return names


class ProofError(RuntimeError):
    """A derived atom could not be re-derived: the engine and the replay disagree."""


class Prover:
    """Proofs and rule witnesses for one case loaded in the knowledge base."""

    def __init__(self, kb, case_key, pointers: dict, pack: str):
        self.kb = kb
        self.pack = pack
        self.case_key = case_key
        self.pointers = pointers  # (pred, values) -> JSON pointer
        self.tables = {}
        self.memo = {}
        self.shared = kb.proof_memo
        # How sentences name values: the rules' display names, and each service line by its
        # number and code (a line's id is a JSON pointer, which prose never shows).
        self.names = {**kb.display_names, **line_names(pointers)}

    def case_tables(self) -> dict:
        """rule index -> witness rows of every rule a decision under the pack can use."""
        if not self.tables and self.pack is not None:
            self.tables = dict(self.kb.case_tables(self.pack, self.case_key))
        return self.tables

    def table(self, rule) -> list:
        if rule.head.pred not in self.kb.case_dependent:
            return self.kb.rule_table(rule)
        number = self.kb.index(rule)
        rows = (self.tables or self.case_tables()).get(number)
        if rows is None:  # a rule outside the pack's set, e.g. asked for by a query
            rows = self.tables[number] = self.kb.rule_table(rule)
        return rows

    def derivations(self, rule):
        """(head values, witness environment) for every witness of the rule, least first."""
        names = rule.variables()
        for row in self.table(rule):
            env = dict(zip(names, row))
            yield ground(rule.head.args, env), env

    def derived(self, pred: str, key) -> list:
        """Every tuple of `pred` for this case, read off the rule tables, least first."""
        found = {values for rule in self.kb.rules_by_head.get(pred, ())
                 for values, _env in self.derivations(rule) if values[0] == key}
        return sorted(found, key=sort_key)

    def witnesses(self, rule, values):
        env = bind(rule.head.args, values)
        if env is None:
            return
        names = rule.variables()
        positions = [(names.index(k), v) for k, v in env.items()]
        for row in self.table(rule):
            if all(row[i] == v for i, v in positions):
                yield dict(zip(names, row))

    # --- nodes ----------------------------------------------------------------------

    def prove(self, pred: str, values: tuple, stack: frozenset = frozenset()) -> dict:
        node = self._prove(pred, tuple(values), stack)
        if node is None:
            raise ProofError(f"no derivation of {render_atom(pred, values)} could be replayed")
        return node

    def _prove(self, pred, values, stack):
        key = (pred, values)
        independent = pred not in self.kb.case_dependent
        memo = self.shared if independent else self.memo
        if key in memo:
            return memo[key]
        if key in stack:
            return None
        decl = self.kb.decls[pred]
        atom = render_atom(pred, values)
        if decl.role == "case":
            pointer = self.pointers.get(key)
            if pointer is None:
                return None
            node = {"node": "case", "atom": atom, "text": self._decl_text(decl, values), "pointer": pointer}
        elif key in self.kb.fact_index:
            fact = self.kb.fact_index[key]
            node = {"node": "fact", "atom": atom, "text": self._decl_text(decl, values),
                    "source": {"file": fact.file, "line": fact.line}}
            if fact.citations:
                node["citations"] = list(fact.citations)
        else:
            node = self._prove_by_rule(pred, values, atom, stack | {key})
            if node is None:
                return None
        memo[key] = node
        return node

    def _prove_by_rule(self, pred, values, atom, stack):
        for rule in self.kb.rules_by_head.get(pred, ()):
            for env in self.witnesses(rule, values):
                children = self.body_nodes(rule, env, stack)
                if children is not None:
                    return self.rule_node(rule, env, atom, children)
        return None

    def rule_node(self, rule, env, atom, children) -> dict:
        return {"node": "rule", "rule": rule.id, "atom": atom, "text": fill(rule.template, env, self.case_key, self.names),
                "source": {"file": rule.file, "line": rule.line}, "citations": list(rule.citations),
                "children": children}

    def body_nodes(self, rule, env, stack=frozenset()):
        children = []
        for item in rule.body:
            if isinstance(item, Comparison):
                left, right = (t.value if isinstance(t, Const) else env[t.name] for t in (item.left, item.right))
                if not compare(item.op, left, right):
                    return None
                text = f"{render_value(left)} {OP_SPELLING[item.op]} {render_value(right)}"
                children.append({"node": "builtin", "atom": text, "text": f"{text} holds"})
            elif item.negated:
                values = ground(item.atom.args, env)
                decl = self.kb.decls[item.atom.pred]
                if decl.negative_template:
                    text = fill(decl.negative_template, dict(zip(decl.params, values)), self.case_key, self.names)
                else:
                    text = "nothing shows that " + self._decl_text(decl, values)
                children.append({"node": "absent", "atom": "not " + render_atom(item.atom.pred, values), "text": text})
            else:
                node = self._prove(item.atom.pred, ground(item.atom.args, env), stack)
                if node is None:
                    return None
                children.append(node)
        return children

    def derivation_node(self, rule, env) -> dict:
        """The proof of one rule's derivation, rooted at that rule (a finding's proof)."""
        values = ground(rule.head.args, env)
        children = self.body_nodes(rule, env)
        if children is None:
            raise ProofError(f"rule {rule.id} could not be replayed for {render_atom(rule.head.pred, values)}")
        return self.rule_node(rule, env, render_atom(rule.head.pred, values), children)

    def _decl_text(self, decl, values) -> str:
        return fill(decl.template, dict(zip(decl.params, values)), self.case_key, self.names)
