"""The engine session: the rule set compiled into pyDatalog on one thread, case facts asserted,
questions asked, fact deltas applied, all through pyDatalog's Python API.

pyDatalog keeps one knowledge base per thread, and one used from two threads answers wrongly
without an error. An Engine belongs to the thread that created it: any work asked of it from
another thread raises EngineThreadError. On its own thread it recompiles itself if another
Engine took the thread's pyDatalog in between. Rule text and case data never pass through
pyDatalog's string APIs.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterable

from pyDatalog import pyEngine
from pyDatalog.Logic import Logic

from ..lang.objects import Comparison, Literal, Var
from .ruleset import RuleSet, load_rules, sort_key


class EngineThreadError(RuntimeError):
    """Engine work was asked from a thread that does not own the engine."""


# Every string reaching pyDatalog carries this prefix: pyDatalog turns the strings "True" and
# "False" into booleans and unifies 1 with True, so raw case strings would not round-trip.
_STR = "s:"


def encode(value):
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        raise TypeError(f"knowledge-base values are strings or integers, not {type(value).__name__}")
    return _STR + value if isinstance(value, str) else value


def decode(value):
    if isinstance(value, str) and value.startswith(_STR):
        return value[len(_STR):]
    if isinstance(value, BaseException):
        # pyDatalog hands some evaluation errors back as values instead of raising them.
        raise RuntimeError(f"the Datalog engine failed during evaluation: {value!r}")
    return value


# Engine predicate names. A rule's predicate is "ionm_" + its name, and a rule name starts with
# a lower-case letter; the engine's own predicates (rule witnesses, pack unions, frozen and
# variant copies) start with "ionm__", which no rule name can give: a user predicate named
# `case_witness_0` or `frozen_time_line` stays the user's.
_INTERNAL = "ionm__"


def _pyname(pred: str) -> str:
    return "ionm_" + pred


def _internal(name: str) -> str:
    return _INTERNAL + name


def _add_clause(head, body: list) -> None:
    if not pyEngine.assert_(pyEngine.Clause(head, body)):
        raise RuntimeError(f"the Datalog engine refused the clause for {head.pred.name}")


def _define(engine_pred: str, arity: int) -> None:
    """Make the engine know a predicate that may have no clauses, so that querying or negating
    it answers "no" instead of raising "Predicate without definition"."""
    placeholder = _engine_clause(engine_pred, [encode("\0undefined")] * arity)
    pyEngine.assert_(placeholder)
    pyEngine.retract(placeholder)


def _engine_clause(engine_pred: str, encoded: list):
    """The engine clause of a ground fact, built with pyDatalog's engine API: what
    pyDatalog.assert_fact builds, without re-wrapping every value in parser objects."""
    return pyEngine.Clause(pyEngine.Literal(engine_pred, [pyEngine.Term_of(v) for v in encoded]), [])


def _engine_fact(pred: str, encoded: list):
    """The engine clause of a ground fact of a declared predicate."""
    return _engine_clause(_pyname(pred), encoded)


class Engine:
    """A RuleSet compiled into this thread's pyDatalog: asserting, asking, fact deltas.

    The rule set's data (decls, rules, facts, citations, indexes) and its analysis are read
    through the engine as well, so callers hold one object."""

    def __init__(self, ruleset: RuleSet):
        self.ruleset = ruleset
        for name in ("files", "problems", "sha256", "decls", "citations", "facts", "rules", "rules_by_id",
                     "rules_by_head", "fact_index", "case_dependent", "display_names"):
            setattr(self, name, getattr(ruleset, name))
        self.index = ruleset.index
        self.report_rules = ruleset.report_rules
        self.pack_rules = ruleset.pack_rules
        self.depends_on = ruleset.depends_on
        self.touched_rules = ruleset.touched_rules
        self.head_tuples = ruleset.head_tuples
        self.rule_count = ruleset.rule_count
        self.fact_count = ruleset.fact_count
        self._owner = threading.get_ident()
        self._owner_name = threading.current_thread().name
        self._global_tables = {}
        self.proof_memo = {}  # proofs of atoms no case fact reaches, shared by all cases
        self._rule_queries = {}
        self._variants = {}
        self._frozen = {}  # frozen engine predicate -> the clauses of its answers for the current case
        self._case_tables = {}  # (pack, case key) -> the asserted case's tables (case_tables)
        self._deltas = 0  # fact_delta blocks open
        self._answers = {}  # answers of predicates no case fact reaches
        self._logic = None
        self._compile()

    @classmethod
    def load(cls, rule_dirs: Iterable = ()) -> "Engine":
        """An engine on this thread for the shipped rules plus `rule_dirs` (not cached)."""
        return cls(load_rules(rule_dirs))

    def _check_thread(self) -> None:
        if threading.get_ident() != self._owner:
            raise EngineThreadError(
                f"this knowledge base belongs to thread {self._owner_name!r}; engine work from thread "
                f"{threading.current_thread().name!r} would read another thread's pyDatalog state. "
                "Load the rules on the thread that asks (api.knowledge_base does, per thread).")

    # --- compilation --------------------------------------------------------------

    def _compile(self) -> None:
        """Build the engine's clauses from the rule objects with pyDatalog's engine API
        (pyEngine Literal, Var, Clause, assert_): the same objects pyDatalog's own parser
        builds from Python expressions, without any text being parsed or evaluated."""
        Logic()  # a fresh engine for this thread
        for name, decl in self.decls.items():
            _define(_pyname(name), decl.arity)
        for fact in self.facts:
            pyEngine.assert_(_engine_fact(fact.atom.pred, [encode(a.value) for a in fact.atom.args]))
        for rule in self.rules:
            variables = [pyEngine.Var(v) for v in rule.variables()]
            witness = pyEngine.Literal(_internal(f"rule_{self.index(rule)}"), variables)
            _add_clause(witness, self._compiled_body(rule))
            head = pyEngine.Literal(_pyname(rule.head.pred), [self._term(a) for a in rule.head.args])
            _add_clause(head, self._compiled_body(rule))
        # Per pack, one predicate that unions the witnesses of every case-dependent rule a
        # decision under that pack can use, padded to one width: asking it once evaluates them
        # all in one pass, sharing tabled subgoals, where asking rule by rule would recompute
        # shared subgoals on every ask.
        self._width = self.ruleset.width
        self._pack_unions, self._pack_by_head = {}, {}
        for number, pack in enumerate(self.ruleset.packs):
            name = _internal(f"case_witness_{number}")
            chosen = self.pack_rules(pack)
            self._pack_unions[pack] = (name, chosen)
            self._pack_by_head[pack] = self.ruleset.pack_rules_by_head(pack)
            self._add_union(name, chosen)
        self._logic = Logic(True)

    def _compiled_body(self, rule, engine_name=_pyname) -> list:
        """The rule's body as engine literals. Evaluation is top-down, left to right: bind with
        the positive literals first, then compare and negate bound values. `engine_name` maps a
        body predicate to the engine predicate that answers it."""
        ordered = ([i for i in rule.body if isinstance(i, Literal) and not i.negated]
                   + [i for i in rule.body if isinstance(i, Comparison)]
                   + [i for i in rule.body if isinstance(i, Literal) and i.negated])
        return [self._compile_item(item, engine_name) for item in ordered]

    @staticmethod
    def _term(arg):
        return pyEngine.Var(arg.name) if isinstance(arg, Var) else pyEngine.Term_of(encode(arg.value))

    def _compile_item(self, item, engine_name=_pyname):
        if isinstance(item, Literal):
            name = ("~" if item.negated else "") + engine_name(item.atom.pred)
            return pyEngine.Literal(name, [self._term(a) for a in item.atom.args])
        return pyEngine.Literal(item.op, [self._term(item.left), self._term(item.right)])

    def _activate(self) -> None:
        self._check_thread()
        current = getattr(Logic.tl, "logic", None)
        if current is not self._logic:
            self._global_tables.clear()
            self._rule_queries.clear()
            self._variants.clear()
            self._frozen.clear()
            self._case_tables.clear()
            self._compile()

    # --- queries ------------------------------------------------------------------

    def ask(self, pred: str, args: tuple) -> list:
        """Ground tuples of `pred` matching `args` (a value, or None for any), least first."""
        self._check_thread()
        if pred not in self.decls:
            raise KeyError(f"{pred} is not a declared predicate")
        independent = pred not in self.case_dependent
        if independent and (pred, args) in self._answers:
            return self._answers[(pred, args)]
        self._activate()
        free = [pyEngine.Var(f"Q{i}") if a is None else pyEngine.Term_of(encode(a)) for i, a in enumerate(args)]
        # The engine literal answers with whole tuples; asking it directly skips the temporary
        # query clause that pyDatalog's Query.ask() builds and deletes on every call.
        answer = pyEngine.Literal(_pyname(pred), free).ask()
        rows = sorted({tuple(decode(v) for v in row) for row in answer or ()}, key=sort_key)
        if independent:
            self._answers[(pred, args)] = rows
        return rows

    def rule_table(self, rule) -> list:
        """Every witness (one value per rule variable) of a rule's body, least first.

        Tables of rules that no case fact reaches are computed once; the others are recomputed
        for each case (the caller caches them per case)."""
        self._check_thread()
        independent = rule.head.pred not in self.case_dependent
        if independent and self.index(rule) in self._global_tables:
            return self._global_tables[self.index(rule)]
        self._activate()
        query = self._rule_queries.get(self.index(rule))
        if query is None:
            query = self._rule_queries[self.index(rule)] = pyEngine.Literal(
                _internal(f"rule_{self.index(rule)}"), [pyEngine.Var(v) for v in rule.variables()])
        rows = sorted({tuple(decode(v) for v in row) for row in query.ask() or ()}, key=sort_key)
        if independent:
            self._global_tables[self.index(rule)] = rows
        return rows

    def case_tables(self, pack: str, case_key: str = "case") -> dict:
        """The witness table of every rule `pack_rules(pack)` names, for the asserted case's
        facts, in one ask; kept until the case is retracted (variant_tables reads them)."""
        self._activate()
        if self._deltas:
            raise RuntimeError("case_tables answers for the case's own facts: ask it before a fact_delta")
        tables = self._case_tables.get((pack, case_key))
        if tables is None:
            name, rules = self._pack_unions[pack]
            tables = self._case_tables[(pack, case_key)] = self._ask_union(name, rules, case_key)
        return tables

    def _add_union(self, name: str, rules: list, engine_name=_pyname) -> None:
        """name(RuleIndex, Case, Witness..., padding) for each rule: asked with Case bound, the
        binding reaches every rule body, so each subgoal is called in one pattern and tabled
        once (a rule derived from case facts takes Case as its first argument)."""
        for rule in rules:
            variables = [pyEngine.Var(v) for v in rule.variables()]
            padding = [pyEngine.Term_of(encode(""))] * (self._width - len(variables))
            head = pyEngine.Literal(name, [pyEngine.Term_of(self.index(rule)), self._term(rule.head.args[0]),
                                           *variables, *padding])
            _add_clause(head, self._compiled_body(rule, engine_name))

    def _ask_union(self, name: str, rules: list, case_key: str) -> dict:
        """Witness tables of the rules a union predicate (_add_union) holds, for one case."""
        query = pyEngine.Literal(name, [pyEngine.Var("K"), pyEngine.Term_of(encode(case_key)),
                                        *[pyEngine.Var(f"W{i}") for i in range(self._width)]])
        tables = {self.index(rule): [] for rule in rules}
        for row in query.ask() or ():
            index = row[0]
            width = len(self.rules[index].variables())
            tables[index].append(tuple(decode(v) for v in row[2:2 + width]))
        for index, rows in tables.items():
            tables[index] = sorted(set(rows), key=sort_key)
        return tables

    def variant_tables(self, rules: list, touched: frozenset, pack: str, case_key: str = "case") -> dict:
        """Witness tables of case-dependent rules after the case facts changed (fact_delta),
        re-deriving only what the change reaches.

        `touched` holds the indexes of the rules whose answers the change may alter
        (touched_rules). Every other rule keeps the answers it has for the case itself (its
        case_tables under `pack`, asked before the delta): they are asserted once per case as facts of
        frozen predicates and read instead of re-deriving them. A rule the change cannot reach
        gives the same answers over the same facts, so the tables equal those a full ask would
        give, without re-deriving the anatomy, lines and procedure under every variant."""
        self._activate()
        key = (tuple(self.index(r) for r in rules), touched, pack)
        compiled = self._variants.get(key)
        if compiled is None:
            compiled = self._variants[key] = self._compile_variant(rules, touched, pack)
        name, frozen = compiled
        base_tables = self._case_tables.get((pack, case_key))
        if base_tables is None:
            raise RuntimeError("variant_tables needs the case's own tables: ask case_tables before the fact_delta")
        for engine_pred, kept in frozen:
            if engine_pred in self._frozen:
                continue
            tuples = set()
            for rule in kept:
                tuples.update(self.head_tuples(rule, base_tables[self.index(rule)]))
            clauses = [_engine_clause(engine_pred, [encode(v) for v in row]) for row in sorted(tuples, key=sort_key)]
            for clause in clauses:
                pyEngine.assert_(clause)
            self._frozen[engine_pred] = clauses
        return self._ask_union(name, rules, case_key)

    def _compile_variant(self, rules: list, touched: frozenset, pack: str) -> tuple:
        """The union predicate of `rules` under one set of touched rules, and the frozen
        predicates it reads: (engine name, the rules whose base answers it holds).

        A derived predicate no touched rule defines is read whole from its frozen copy; one that
        a touched rule defines gets its own predicate: the touched rules, compiled the same way,
        plus the frozen answers of its untouched rules. Rules of another pack are left out: they
        have no answers for a case under `pack` (applies_policy names one pack per case)."""
        number = len(self._variants)
        frozen, copied, todo = {}, set(), []
        pack_by_head = self._pack_by_head[pack]

        def engine_name(pred):
            if pred not in self.case_dependent or pred not in self.rules_by_head:
                return _pyname(pred)
            if any(self.index(r) in touched for r in self.rules_by_head[pred]):
                if pred not in copied:
                    copied.add(pred)
                    todo.append(pred)
                return _internal(f"v{number}_{pred}")
            frozen.setdefault(_internal(f"frozen_{pred}"), (pred, tuple(pack_by_head.get(pred, ()))))
            return _internal(f"frozen_{pred}")

        name = _internal(f"variant_{number}")
        self._add_union(name, rules, engine_name)
        while todo:
            pred = todo.pop()
            kept = tuple(r for r in pack_by_head.get(pred, ()) if self.index(r) not in touched)
            arguments = [pyEngine.Var(f"A{i}") for i in range(self.decls[pred].arity)]
            if kept:
                frozen[_internal(f"v{number}_kept_{pred}")] = (pred, kept)
                _add_clause(pyEngine.Literal(_internal(f"v{number}_{pred}"), arguments),
                            [pyEngine.Literal(_internal(f"v{number}_kept_{pred}"), arguments)])
            for rule in pack_by_head.get(pred, ()):
                if self.index(rule) in touched:
                    head = pyEngine.Literal(_internal(f"v{number}_{pred}"), [self._term(a) for a in rule.head.args])
                    _add_clause(head, self._compiled_body(rule, engine_name))
        for engine_pred, (pred, _kept) in sorted(frozen.items()):
            _define(engine_pred, self.decls[pred].arity)
        for pred in sorted(copied):
            _define(_internal(f"v{number}_{pred}"), self.decls[pred].arity)
        return name, tuple((engine_pred, kept) for engine_pred, (_pred, kept) in sorted(frozen.items()))

    @contextmanager
    def case_facts(self, facts: list):
        """Assert (pred, values) case facts for the duration of a block, then retract them."""
        self._activate()
        self._case_tables.clear()
        clauses = [_engine_fact(pred, [encode(v) for v in values]) for pred, values in facts]
        asserted = []
        try:
            for clause in clauses:
                pyEngine.assert_(clause)
                asserted.append(clause)
            yield self
        finally:
            self._activate()
            for clause in asserted:
                pyEngine.retract(clause)
            for clauses in self._frozen.values():
                for clause in clauses:
                    pyEngine.retract(clause)
            self._frozen.clear()
            self._case_tables.clear()

    @contextmanager
    def fact_delta(self, add, remove):
        """Within an asserted case: retract `remove` and assert `add` for a block, then undo."""
        self._activate()
        add = [_engine_fact(p, [encode(v) for v in vals]) for p, vals in add]
        remove = [_engine_fact(p, [encode(v) for v in vals]) for p, vals in remove]
        for clause in remove:
            pyEngine.retract(clause)
        for clause in add:
            pyEngine.assert_(clause)
        self._deltas += 1
        try:
            yield self
        finally:
            self._deltas -= 1
            self._activate()
            for clause in add:
                pyEngine.retract(clause)
            for clause in remove:
                pyEngine.assert_(clause)

    def values(self, pred: str, *args) -> list:
        return self.ask(pred, tuple(args))
