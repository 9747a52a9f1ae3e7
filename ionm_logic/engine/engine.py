"""The engine session: the rule set compiled into pyDatalog on one thread, case facts asserted,
questions asked, fact deltas applied, all through pyDatalog's Python API.

pyDatalog keeps one knowledge base per thread, and one used from two threads answers wrongly
without an error. An Engine belongs to the thread that created it: any work asked of it from
another thread raises EngineThreadError. On its own thread it recompiles itself if another
Engine took the thread's pyDatalog in between. Rule text and case data never pass through
pyDatalog's string APIs.
"""
from __future__ import annotations

import itertools
import threading
from contextlib import contextmanager
from typing import Iterable

from pyDatalog import pyEngine
from pyDatalog.Logic import Logic

from ..lang.graph import components, reachable
from ..lang.objects import Comparison, Const, Literal, Var
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


# Bounds on what an engine keeps across cases: rule witnesses by their inputs (whole or line by
# line; a key's sets are shared with the case's own, so an entry is a few hundred bytes), and
# unions of part of a stratum compiled into pyDatalog (they stay compiled).
RULE_MEMO_ENTRIES = 60_000
SUBSET_UNIONS = 2_000
_NONE = frozenset()
# (predicate, constants, held values) -> an object standing for them in the views' keys: hashing
# it (by identity) is cheaper than hashing the tuple again at every look-up. One setdefault call
# gives every thread compiling an engine the same object.
_VIEW_NAMES = {}


class _AnyLine:
    """Stands for a line value in a rule memo key and its witnesses (Engine._line_keys): no
    case or rule value equals it."""
    __slots__ = ()

    def __repr__(self) -> str:
        return "<any line>"


_LINE = _AnyLine()


def _renamed(rows, old, new) -> list:
    """`rows` (tuples) with every `old` value replaced by `new`."""
    return [tuple([new if v == old and type(v) is type(old) else v for v in row]) if old in row else row
            for row in rows]


def _matching(found, consts: tuple, held: tuple) -> frozenset:
    """The tuples of `found` with constant `consts` and values among `held` at their places
    (an input's view: _Stages.scan)."""
    return frozenset([v for v in found if all(v[i] == c for i, c in consts) and all(v[i] in s for i, s in held)])


def _holds_at(parts: list, positions: tuple, value) -> bool:
    """Whether a tuple of some parts[j] holds `value` at one of positions[j]."""
    return any(v[i] == value and type(v[i]) is type(value) for part, places in zip(parts, positions) if places
               for v in part for i in places)


class _Memo:
    """At most RULE_MEMO_ENTRIES entries in two generations: when the newer one holds half,
    the older is dropped and the newer takes its place; an entry found in the older moves to
    the newer. What is used keeps its place; what no recent case used goes, half at a time."""

    def __init__(self):
        self.half = max(1, RULE_MEMO_ENTRIES // 2)
        self.new, self.old = {}, {}

    def __len__(self) -> int:
        return len(self.new) + len(self.old)

    def get(self, key):
        found = self.new.get(key)
        if found is None:
            found = self.old.get(key)
            if found is not None:
                self[key] = found
        return found

    def __setitem__(self, key, value) -> None:
        if len(self.new) >= self.half:
            self.old, self.new = self.new, {}
        self.new[key] = value

    def clear(self) -> None:
        self.new, self.old = {}, {}


class _Delta:
    """The case facts one fact_delta changes: all of them, and per predicate (the values
    removed, the values added)."""

    def __init__(self, add, remove):
        self.facts = frozenset(add) | frozenset(remove)
        removed, added = {}, {}
        for found, facts in ((added, add), (removed, remove)):
            for pred, values in facts:
                found.setdefault(pred, set()).add(tuple(values))
        self.by_pred = {pred: (removed.get(pred, _NONE), added.get(pred, _NONE)) for pred in {**added, **removed}}


class _Changes:
    """Engine changes (engine predicate, values, present) of one block (case_facts, fact_delta,
    a variant's swapped answers): those not yet made, by engine predicate (an ask makes only
    those of the predicates it reads), and those made, in order, as (clause, present). A change
    no ask reads never becomes a clause."""
    __slots__ = ("changes", "filed", "pending", "made")

    def __init__(self, changes: list):
        self.changes = changes  # may grow inside the block
        self.filed = 0  # how many of `changes` are filed in `pending` or made
        self.pending = {}  # engine predicate name -> its changes not yet made, in order
        self.made = []  # (clause, present) made on the engine, in order


class _Stages:
    """One pack's case-dependent rules in strata, for evaluating a case bottom-up.

    A stratum holds the rules of derived predicates that depend only on case facts, rule-file
    facts and lower strata; predicates that depend on each other (a recursive component) share
    one stratum. The rules of a stratum read each lower predicate from a frozen copy holding its
    answers for the case, and the predicates of their own recursive component from live copies
    of its rules; everything else from the engine's own predicates."""

    def __init__(self, ruleset, pack: str, number: int):
        self.number = number
        self.by_head = ruleset.pack_rules_by_head(pack)
        self.index = ruleset.index
        self.head_of = {ruleset.index(r): pred for pred, rules in self.by_head.items() for r in rules}
        self.deps = {pred: sorted({item.atom.pred for rule in rules for item in rule.body
                                   if isinstance(item, Literal) and item.atom.pred in self.by_head})
                     for pred, rules in self.by_head.items()}
        self.component, self.level_of = {}, {}
        for members in components(sorted(self.by_head), self.deps.__getitem__):
            level = 1 + max((self.level_of[q] for p in members for q in self.deps[p] if q not in members), default=-1)
            for pred in members:
                self.component[pred], self.level_of[pred] = members, level
        self.live_preds = {p for p, members in self.component.items() if len(members) > 1 or p in self.deps[p]}
        self.frozen_preds = {q for p in self.by_head for q in self.deps[p] if q not in self.component[p]}
        # pred -> frozen_name(pred), named once: case_tables and every variant name them.
        self.frozen_names = {p: self.frozen_name(p) for p in self.frozen_preds}
        count = 1 + max(self.level_of.values(), default=-1)
        self.levels = [[r for r in ruleset.pack_rules(pack) if self.level_of[r.head.pred] == k] for k in range(count)]
        self.frozen_at = [sorted(p for p in self.frozen_preds if self.level_of[p] == k) for k in range(count)]
        self.numbers_at = [tuple(sorted(self.index(r) for r in rules)) for rules in self.levels]
        self.reads = {self.index(r): tuple(sorted({item.atom.pred for item in r.body if isinstance(item, Literal)
                                                   and item.atom.pred in self.by_head}))
                      for rules in self.by_head.values() for r in rules}
        self.numbers = {pred: tuple(self.index(r) for r in rules) for pred, rules in self.by_head.items()}
        self.readers = {}  # pred -> the numbers of the rules that read it (reads)
        for n, preds in self.reads.items():
            for pred in preds:
                self.readers.setdefault(pred, set()).add(n)
        self.readers = {pred: frozenset(found) for pred, found in self.readers.items()}
        self._frozen_heads = {}
        self.live_rules = frozenset(n for n, pred in self.head_of.items() if pred in self.live_preds)
        # What a rule's witnesses depend on, literal by literal: the asserted case facts and
        # lower strata's answers that match the literal's constants, as (answer?, predicate,
        # constants, decisive, line positions). Those are its memo key. A decisive literal is
        # positive and over what only the case gives (its facts with no rule or rule-file fact
        # adding to them, or lower answers): when nothing matches it, the rule has no witness.
        #
        # A rule whose head's second argument is a variable (a line, mostly) that a decisive
        # literal binds is also remembered value by value (`line_var`: the variable's place in
        # a witness): the witnesses with Line = L depend only on the inputs that hold L where
        # the literal has Line ("line positions"), and on the others whole. A case whose lines
        # each met the same inputs before is answered without an ask, however the lines combine.
        #
        # An input is also held to the values that the rule's positive literals over rule-file
        # facts allow where they share a variable with it (`held`: per input, (position,
        # values) pairs): a tuple outside them joins no witness and, negated, refutes none, so
        # the key leaves it out, exactly (e.g. has_diagnosis_in(Case, Prefix) beside
        # axial_pain_diagnosis(Prefix) keeps only the case's axial-pain prefixes).
        fact_rows = {}  # pred -> its rule-file facts' values
        for f in ruleset.facts:
            fact_rows.setdefault(f.atom.pred, []).append(tuple(a.value for a in f.atom.args))
        asserted = {p for p, d in ruleset.decls.items() if d.role == "case"}
        only_asserted = asserted - set(ruleset.rules_by_head) - set(fact_rows)
        only_facts = set(fact_rows) - set(ruleset.rules_by_head) - asserted
        self.inputs, self.held, self.scan, self.line_var, self.joins, self.generic, self.ordered = {}, {}, {}, {}, {}, set(), {}
        for rules in self.by_head.values():
            for r in rules:
                n, own, found, literals = self.index(r), self.component[r.head.pred], {}, {}
                bounds = self._bounds(r, fact_rows, only_facts)
                head = r.head.args
                line = head[1].name if (len(head) > 1 and isinstance(head[1], Var) and n not in self.live_rules
                                        and not (isinstance(head[0], Var) and head[0].name == head[1].name)) else None
                for item in r.body:
                    if not isinstance(item, Literal) or item.atom.pred in own and item.atom.pred in self.live_preds:
                        continue
                    pred = item.atom.pred
                    if pred not in self.by_head and pred not in asserted:
                        continue  # rule-file facts and case-independent predicates: the same for every case
                    args = item.atom.args
                    consts = tuple((i, a.value) for i, a in enumerate(args) if isinstance(a, Const))
                    places = tuple(i for i, a in enumerate(args) if isinstance(a, Var) and a.name == line)
                    key = (pred in self.by_head, pred, consts, places)
                    found[key] = found.get(key, False) or (not item.negated and (key[0] or pred in only_asserted))
                    literals.setdefault(key, []).append(item)
                keys = sorted(found, key=lambda k: (not found[k], repr(k)))  # decisive first: an empty one ends the scan
                self.inputs[n] = tuple((answer, pred, consts, found[answer, pred, consts, places], places)
                                       for answer, pred, consts, places in keys)
                self.held[n] = tuple(self._held(literals[key], bounds) for key in keys)
                # What _stratum reads per input: (answer?, predicate, what stands for its
                # constants and held values in views keys or None, those, decisive).
                self.scan[n] = tuple((answer, pred, _VIEW_NAMES.setdefault((pred, consts, held), object())
                                      if consts or held else None, consts, held, decisive)
                                     for (answer, pred, consts, decisive, _p), held in zip(self.inputs[n], self.held[n]))
                if line is not None and any(d and places for _a, _p, _c, d, places in self.inputs[n]):
                    self.line_var[n] = r.variables().index(line)
                    self.joins[n] = self._joins(self.inputs[n], [literals[key] for key in keys])
                    compared = {v for item in r.body if isinstance(item, Comparison) and item.op not in ("==", "!=")
                                for v in item.variables()}
                    if line not in compared:
                        self.generic.add(n)
                    if compared and line not in compared:
                        self.ordered[n] = tuple(
                            tuple(sorted({i for lit in literals[key] for i, a in enumerate(lit.atom.args)
                                          if isinstance(a, Var) and a.name in compared})) for key in keys)
        # Datalog cannot tell one value from another except by the constants of its rules and
        # facts and by order comparisons: a rule in `generic` (its line variable never compared
        # by order) finds for a line value no rule names the witnesses it finds for any other,
        # renamed, unless the value sits where the rule compares by order (`ordered`: per
        # input, the positions of variables so compared; _line_keys looks there).
        self.constants = frozenset(
            [a.value for r in ruleset.rules for a in r.head.args if isinstance(a, Const)]
            + [t.value for r in ruleset.rules for item in r.body
               for t in (item.atom.args if isinstance(item, Literal) else (item.left, item.right)) if isinstance(t, Const)]
            + [a.value for f in ruleset.facts for a in f.atom.args])
        self._plans = {}

    @staticmethod
    def _bounds(rule, fact_rows: dict, only_facts: set) -> dict:
        """variable -> the values the rule's positive literals over predicates that only
        rule-file facts give (`only_facts`) allow it: in every witness it holds one of them."""
        bounds = {}
        for item in rule.body:
            if not isinstance(item, Literal) or item.negated or item.atom.pred not in only_facts:
                continue
            args = item.atom.args
            rows = [row for row in fact_rows[item.atom.pred]
                    if all(row[i] == a.value for i, a in enumerate(args) if isinstance(a, Const))]
            for i, a in enumerate(args):
                if isinstance(a, Var):
                    values = frozenset(row[i] for row in rows)
                    bounds[a.name] = bounds[a.name] & values if a.name in bounds else values
        return bounds

    @staticmethod
    def _held(literals: list, bounds: dict) -> tuple:
        """(position, values) pairs an input's tuples must meet to join a witness through one
        of `literals` (those sharing its memo key): at a position where each literal has a
        bounded variable, the union of their bounds."""
        held = None
        for literal in literals:
            here = {}
            for i, a in enumerate(literal.atom.args):
                if isinstance(a, Var) and a.name in bounds:
                    here[i] = here[i] & bounds[a.name] if i in here else bounds[a.name]
            held = here if held is None else {i: held[i] | here[i] for i in held.keys() & here.keys()}
        return tuple(sorted(held.items()))

    @staticmethod
    def _joins(inputs: tuple, literals: list) -> tuple:
        """Per input of a rule remembered line by line: how its part of a line's memo key is
        held to what that line's witnesses can use. For an input without the line variable that
        shares variables with a decisive input that has it (each of one literal): (that input's
        place, the shared variables' positions here, theirs there); otherwise None. A witness
        with Line = L binds the shared variables to a tuple of the decisive input's L-part, so
        only this input's tuples agreeing with one of those can take part in it or, negated,
        refute it: the key keeps those alone, exactly (_line_keys)."""
        def positions(literal):
            out = {}
            for i, a in enumerate(literal.atom.args):
                if isinstance(a, Var):
                    out.setdefault(a.name, i)
            return out

        binders = [(i, positions(lits[0])) for i, ((_a, _p, _c, decisive, places), lits) in enumerate(zip(inputs, literals))
                   if decisive and places and len(lits) == 1]
        out = []
        for (_a, _p, _c, _d, places), lits in zip(inputs, literals):
            join = None
            if not places and len(lits) == 1:
                here = positions(lits[0])
                for i, there in binders:
                    shared = sorted(set(here) & set(there))
                    if shared:
                        join = (i, tuple(here[v] for v in shared), tuple(there[v] for v in shared))
                        break
            out.append(join)
        return tuple(out)

    def closed(self, numbers) -> tuple:
        """The rule numbers, with every rule of a recursive component one of them belongs to."""
        if not self.live_preds:
            return tuple(sorted(numbers))
        out = set(numbers)
        for n in list(out):
            pred = self.head_of[n]
            if pred in self.live_preds:
                out.update(n for p in self.component[pred] for n in self.numbers[p])
        return tuple(sorted(out))

    def frozen_heads(self, numbers: tuple) -> tuple:
        """The frozen predicates (frozen_preds) the rules `numbers` conclude, in name order."""
        found = self._frozen_heads.get(numbers)
        if found is None:
            found = tuple(sorted({self.head_of[n] for n in numbers} & self.frozen_preds))
            if len(self._frozen_heads) > 4096:  # keys repeat across cases; bound it all the same
                self._frozen_heads.clear()
            self._frozen_heads[numbers] = found
        return found

    def union_name(self, level: int) -> str:
        return _internal(f"p{self.number}_stratum_{level}")

    def frozen_name(self, pred: str) -> str:
        return _internal(f"p{self.number}_frozen_{pred}")

    def live_name(self, pred: str) -> str:
        return _internal(f"p{self.number}_live_{pred}")

    def engine_name(self, rule):
        """The engine predicate each body predicate of `rule` is read from."""
        own = self.component[rule.head.pred]

        def name(pred):
            if pred in own and pred in self.live_preds:
                return self.live_name(pred)
            if pred in self.by_head:
                return self.frozen_name(pred)
            return _pyname(pred)
        return name

    def plan(self, asked: tuple, touched: frozenset) -> tuple:
        """(stratum, rule indexes, the rule indexes of this stratum and the later ones) in
        stratum order: the touched rules that the rules numbered `asked` are or depend on, a
        recursive component's rules all together."""
        key = (asked, touched)
        found = self._plans.get(key)
        if found is None:
            heads = {self.head_of[n] for n in asked if n in self.head_of}
            below = reachable({q for p in heads for q in self.deps[p]}, self.deps.__getitem__)
            wanted = self.closed({n for n in asked if n in touched}
                                 | {n for p in below for n in self.numbers[p] if n in touched})
            strata = {}
            for n in wanted:
                strata.setdefault(self.level_of[self.head_of[n]], []).append(n)
            found, later = [], frozenset()
            for level in sorted(strata, reverse=True):
                later = later.union(strata[level])
                found.append((level, tuple(sorted(strata[level])), later))
            found = tuple(reversed(found))
            if len(self._plans) > 4096:  # keys repeat across cases; bound it all the same
                self._plans.clear()
            self._plans[key] = found
        return found


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
        self.rule_count = ruleset.rule_count
        self.fact_count = ruleset.fact_count
        self._owner = threading.get_ident()
        self._owner_name = threading.current_thread().name
        self._global_tables = {}
        self.proof_memo = {}  # proofs of atoms no case fact reaches, shared by all cases
        self._rule_queries = {}
        self._subset_unions = {}  # (pack number, stratum, rule numbers) -> a union of those rules
        self._rule_memo = _Memo()  # (rule number, the facts and answers its body reads) -> its witnesses
        self._heads = {}  # id(witness rows) -> (those rows, their rule, their head tuples)
        self.line_hits = 0  # rules answered line by line from the memo (_line_keys), for tests
        self._views = {}  # (pred, constants or line places, facts or answers) -> those matching, or by line
        self._canon = {}  # a set of facts or answers -> the equal set met first (_canonical)
        self._fact_sets = {}  # pred -> the asserted case facts' values
        self._clauses = {}  # (engine predicate, values) -> its fact clause (_fact_clause)
        self._case_frame = None  # the _Changes of the asserted case: its facts, then its frozen answers
        self._frozen_answers = {}  # (pack, case key) -> pred -> its tuples, as frozen
        self._base_heads = {}  # (pack, case key) -> rule number -> its head tuples, for frozen predicates' rules
        self._case_tables = {}  # (pack, case key) -> the asserted case's tables (case_tables)
        self._deltas = 0  # fact_delta blocks open
        self._delta_facts = []  # a _Delta for each open fact_delta: the facts it changes
        self._lazy = []  # a _Changes for each open block of changes, outermost first
        self._reads = {}  # union predicate name -> the engine predicates it reads (_union_reads)
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
        # Per pack, the case-dependent rules in strata (_Stages): asking one stratum's union
        # evaluates its rules against the lower strata's answers asserted as facts, so each
        # derived predicate is computed once per case, however many binding patterns the rules
        # above call it with (pyDatalog tables subgoals per pattern and only within one ask).
        self._width = self.ruleset.width
        self._stages = {}
        # rule number -> its decisive inputs over case facts alone, (pred, constants, held):
        # the same in every pack's stages that hold the rule (they read no answers).
        self._fact_inputs = {}
        for number, pack in enumerate(self.ruleset.packs):
            stages = self._stages[pack] = _Stages(self.ruleset, pack, number)
            for pred in sorted(stages.frozen_preds):
                _define(stages.frozen_name(pred), self.decls[pred].arity)
            for pred in sorted(stages.live_preds):
                _define(stages.live_name(pred), self.decls[pred].arity)
                for rule in stages.by_head[pred]:
                    head = pyEngine.Literal(stages.live_name(pred), [self._term(a) for a in rule.head.args])
                    _add_clause(head, self._compiled_body(rule, stages.engine_name(rule)))
            for level, rules in enumerate(stages.levels):
                self._add_union(stages.union_name(level), rules, stages.engine_name)
            for n, scan in stages.scan.items():
                self._fact_inputs.setdefault(n, tuple((pred, consts, held) for answer, pred, _v, consts, held, decisive
                                                      in scan if decisive and not answer))
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
        if threading.get_ident() != self._owner:
            self._check_thread()
        current = getattr(Logic.tl, "logic", None)
        if current is not self._logic:
            self._global_tables.clear()
            self._rule_queries.clear()
            self._subset_unions.clear()
            self._reads.clear()
            self._rule_memo.clear()
            self._views.clear()
            self._canon.clear()
            self._clauses.clear()
            self._frozen_answers.clear()
            self._base_heads.clear()
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
        self._sync()
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
        if not independent and self._case_frame is not None and not self._deltas and self._no_witness(rule):
            return []
        query = self._rule_queries.get(self.index(rule))
        if query is None:
            query = self._rule_queries[self.index(rule)] = pyEngine.Literal(
                _internal(f"rule_{self.index(rule)}"), [pyEngine.Var(v) for v in rule.variables()])
        self._sync()
        rows = sorted({tuple(decode(v) for v in row) for row in query.ask() or ()}, key=sort_key)
        if independent:
            self._global_tables[self.index(rule)] = rows
        return rows

    def _no_witness(self, rule) -> bool:
        """Whether a decisive input of the rule over case facts (_Stages.inputs) matches none of
        the asserted case's facts: then its body has no witness, and no ask need say so (a
        proof trying a rule gated to another pack asks nothing, nor asserts the case for it)."""
        facts = self._fact_sets
        return any(not _matching(facts.get(pred, _NONE), consts, held)
                   for pred, consts, held in self._fact_inputs.get(self.index(rule), ()))

    def case_tables(self, pack: str, case_key: str = "case") -> dict:
        """The witness table of every rule `pack_rules(pack)` names, for the asserted case's
        facts, one ask per stratum; kept until the case is retracted (variant_tables reads them)."""
        self._activate()
        if self._deltas:
            raise RuntimeError("case_tables answers for the case's own facts: ask it before a fact_delta")
        if self._case_frame is None:
            raise RuntimeError("case_tables answers for an asserted case: ask it inside case_facts")
        tables = self._case_tables.get((pack, case_key))
        if tables is None:
            stages = self._stages[pack]
            tables, answers, heads = {}, {}, {}
            for level, rules in enumerate(stages.levels):
                self._stratum(stages, level, stages.numbers_at[level], self._fact_sets, answers, case_key, tables)
                for pred in stages.frozen_at[level]:
                    found = set()
                    for rule, n in zip(stages.by_head[pred], stages.numbers[pred]):
                        heads[n] = self.head_tuples(rule, tables[n])
                        found.update(heads[n])
                    answers[pred] = self._canonical(frozenset(found))
                    name = stages.frozen_names[pred]
                    self._case_frame.changes.extend([(name, values, True) for values in answers[pred]])
            self._case_tables[(pack, case_key)] = tables
            self._frozen_answers[(pack, case_key)] = answers
            self._base_heads[(pack, case_key)] = heads
        return tables

    def head_tuples(self, rule, rows: list) -> list:
        """The head tuple each witness row of `rule` derives (RuleSet.head_tuples), kept for
        the rows list itself: the memo hands the same list to every case with those inputs.
        The list returned is shared: callers read it, never change it."""
        if not rows:
            return []  # not kept: an empty table is a new list in every case
        kept = self._heads.get(id(rows))
        if kept is not None and kept[0] is rows and kept[1] is rule:
            return kept[2]
        if len(self._heads) > 50_000:
            self._heads.clear()
        heads = self.ruleset.head_tuples(rule, rows)
        self._heads[id(rows)] = (rows, rule, heads)  # holding rows keeps its id from being reused
        return heads

    def _canonical(self, found: frozenset) -> frozenset:
        """`found`, or the equal set met before it (bounded). Memo keys and views are tuples of
        such sets, and a dict compares a key with an equal one element by element unless they
        are the same objects: met in every case, the same facts are then compared once, here,
        not once per rule whose key holds them. Values are strings and integers only (encode),
        so equal sets hold the same values."""
        canon = self._canon
        out = canon.get(found)
        if out is None:
            if len(canon) > 50_000:
                canon.clear()
            out = canon[found] = found
        return out

    def _fact_clause(self, engine_pred: str, values: tuple):
        """The engine clause of a ground fact, built once and kept (bounded): case facts, their
        variants and frozen answers recur across cases. Kept per engine: a clause names its
        predicate in one pyDatalog."""
        key = (engine_pred, values, tuple(map(type, values)))  # 1, 1.0 and True are equal keys otherwise
        clause = self._clauses.get(key)
        if clause is None:
            if len(self._clauses) > 50_000:
                self._clauses.clear()
            clause = self._clauses[key] = _engine_clause(engine_pred, [encode(v) for v in values])
        return clause

    def _stratum(self, stages, level: int, numbers, facts: dict, answers: dict, case_key: str, tables: dict) -> None:
        """Put in `tables` the witnesses of the stratum's rules `numbers`, for the case facts
        `facts` and lower answers `answers` (pred -> frozenset) asserted now.

        A rule's witnesses depend only on the facts and answers its body literals match
        (_Stages.inputs): those already found for the same inputs, in this case or an earlier
        one, are taken from the memo (exact: the inputs are its key), whole or line by line
        (_line_keys), and only the others are asked, in one union (a rule of a recursive
        component is always asked, with its component)."""
        memo, todo, by_line, live, views = self._rule_memo, {}, {}, stages.live_rules, self._views
        memo_new = memo.new
        for n in numbers:
            parts, empty = [n], False
            for answer, pred, view, consts, held, decisive in stages.scan[n]:
                found = answers[pred] if answer else facts.get(pred, _NONE)
                if view is not None and found:
                    whole, found = found, views.get((view, found))
                    if found is None:
                        if len(views) > 50_000:
                            views.clear()
                        found = views[(view, whole)] = self._canonical(_matching(whole, consts, held))
                if decisive and not found and n not in live:
                    empty = True
                    break
                parts.append(found)
            if empty:
                tables[n] = []
                continue
            inputs = tuple(parts)
            known = memo_new.get(inputs)  # _Memo.get, its common case without a call
            if known is None:
                known = memo.get(inputs)
            if known is not None and n not in live:
                tables[n] = known
                continue
            todo[n] = inputs
            if n in stages.line_var:
                keys = self._line_keys(stages, n, parts)
                rows = []
                for value, key, renamed in keys:
                    found = memo.get(key)
                    if found is None:
                        by_line[n] = keys
                        break
                    rows.extend(_renamed(found, _LINE, value) if renamed else found)
                else:
                    tables[n] = memo[inputs] = sorted(rows, key=sort_key)
                    del todo[n]
                    self.line_hits += 1
        if not todo:
            return
        group = stages.closed(todo)
        if group == stages.numbers_at[level]:
            name, rules = stages.union_name(level), stages.levels[level]
        else:
            compiled = self._subset_unions.get((stages.number, level, group))
            if compiled is None:
                if len(self._subset_unions) >= SUBSET_UNIONS:
                    group = stages.numbers_at[level]  # enough unions compiled: ask the whole stratum
                    compiled = (stages.union_name(level), stages.levels[level])
                else:
                    compiled = self._subset_unions[(stages.number, level, group)] = self._compile_stratum(stages, group)
            name, rules = compiled
        reads = self._reads.get(name)
        if reads is None:
            reads = self._reads[name] = self._union_reads(stages, rules)
        found = self._ask_union(name, rules, case_key, reads)
        tables.update(found)
        for n, inputs in todo.items():
            memo[inputs] = found[n]
        for n, keys in by_line.items():
            place, rows = stages.line_var[n], {}
            for row in found[n]:
                rows.setdefault(row[place], []).append(row)
            for value, key, renamed in keys:
                here = rows.get(value, [])
                memo[key] = _renamed(here, value, _LINE) if renamed else here

    def _line_keys(self, stages, n: int, parts: list) -> list:
        """The memo keys of rule `n`'s witnesses value by value of its line variable (_Stages.
        line_var): (value, key, renamed) for each value every decisive literal with the
        variable holds. The key is (n, value, each input held to the value where the literal
        has the variable, and to what can join it: _Stages._joins); for a generic rule and a
        value no rule names nor any input holds where the rule compares by order, the value is
        renamed _LINE throughout the key (renamed: the witnesses are remembered so renamed, and
        the same for every line so held)."""
        inputs, joins = stages.inputs[n], stages.joins[n]
        generic, ordered = n in stages.generic, stages.ordered.get(n)
        views, split = self._views, []
        for (_answer, pred, _consts, _decisive, places), found in zip(inputs, parts[1:]):
            if not places:
                split.append(None)
                continue
            grouped = views.get((pred, places, found))
            if grouped is None:
                grouped = {}
                for v in found:
                    if all(v[i] == v[places[0]] for i in places):
                        grouped.setdefault(v[places[0]], set()).add(v)
                grouped = views[(pred, places, found)] = {k: self._canonical(frozenset(vs)) for k, vs in grouped.items()}
            split.append(grouped)
        values = None
        for (_answer, _pred, _consts, decisive, places), grouped in zip(inputs, split):
            if decisive and places:
                values = set(grouped) if values is None else values & set(grouped)
        keys = []
        for value in sorted(values, key=lambda v: sort_key((v,))):
            held = [found if grouped is None else grouped.get(value, _NONE) for found, grouped in zip(parts[1:], split)]
            for j, join in enumerate(joins):
                if join is not None and held[j]:
                    held[j] = self._joined(held[j], join[1], held[join[0]], join[2])
            if generic and value not in stages.constants and not (ordered and _holds_at(held, ordered, value)):
                keys.append((value, (n, _LINE, *[self._renamed_part(part, value) for part in held]), True))
            else:
                keys.append((value, (n, value, *held), False))
        return keys

    def _renamed_part(self, part: frozenset, value) -> frozenset:
        """`part` with `value` renamed _LINE in every tuple, kept (bounded) in the views."""
        key = (_LINE, value, part)
        out = self._views.get(key)
        if out is None:
            out = frozenset(_renamed(part, value, _LINE))
            out = part if out == part else self._canonical(out)  # nothing renamed: the same object
            if len(self._views) > 50_000:
                self._views.clear()
            self._views[key] = out
        return out

    def _joined(self, found: frozenset, here: tuple, binder: frozenset, there: tuple) -> frozenset:
        """The tuples of `found` whose values at positions `here` are those of a tuple of
        `binder` at positions `there` (a semi-join), kept (bounded) in the views."""
        views = self._views
        key = (here, there, found, binder)
        out = views.get(key)
        if out is None:
            bound = {tuple([b[i] for i in there]) for b in binder}
            out = frozenset([v for v in found if tuple([v[i] for i in here]) in bound])
            out = found if out == found else self._canonical(out)
            if len(views) > 50_000:
                views.clear()
            views[key] = out
        return out

    def _union_reads(self, stages, rules: list) -> frozenset:
        """The engine predicates asking a union of `rules` may read: what their bodies name
        (stages.engine_name), and what the engine's own clauses of a predicate among those
        read in turn (its rules' bodies), transitively."""
        out, todo = set(), []
        for rule in rules:
            names = stages.engine_name(rule)
            for item in rule.body:
                if isinstance(item, Literal):
                    name = names(item.atom.pred)
                    out.add(name)
                    if name == _pyname(item.atom.pred):
                        todo.append(item.atom.pred)
        seen = set()
        while todo:
            pred = todo.pop()
            if pred in seen:
                continue
            seen.add(pred)
            for rule in self.rules_by_head.get(pred, ()):
                for item in rule.body:
                    if isinstance(item, Literal):
                        out.add(_pyname(item.atom.pred))
                        todo.append(item.atom.pred)
        return frozenset(out)

    def _add_union(self, name: str, rules: list, names_for) -> None:
        """name(RuleIndex, Case, Witness..., padding) for each rule: asked with Case bound, the
        binding reaches every rule body, so each subgoal is called in one pattern and tabled
        once (a rule derived from case facts takes Case as its first argument). `names_for(rule)`
        maps the rule's body predicates to the engine predicates that answer them."""
        for rule in rules:
            variables = [pyEngine.Var(v) for v in rule.variables()]
            padding = [pyEngine.Term_of(encode(""))] * (self._width - len(variables))
            head = pyEngine.Literal(name, [pyEngine.Term_of(self.index(rule)), self._term(rule.head.args[0]),
                                           *variables, *padding])
            _add_clause(head, self._compiled_body(rule, names_for(rule)))

    def _ask_union(self, name: str, rules: list, case_key: str, reads) -> dict:
        """Witness tables of the rules a union predicate (_add_union) holds, for one case;
        `reads` holds the engine predicates they read (_union_reads)."""
        query = pyEngine.Literal(name, [pyEngine.Var("K"), pyEngine.Term_of(encode(case_key)),
                                        *[pyEngine.Var(f"W{i}") for i in range(self._width)]])
        tables = {self.index(rule): [] for rule in rules}
        self._sync(reads)
        for row in query.ask() or ():
            index = row[0]
            width = len(self.rules[index].variables())
            tables[index].append(tuple(decode(v) for v in row[2:2 + width]))
        for index, rows in tables.items():
            tables[index] = sorted(set(rows), key=sort_key)
        return tables

    def variant_tables(self, rules: list, touched: frozenset, pack: str, case_key: str = "case") -> dict:
        """Witness tables of `rules` after the case facts changed (fact_delta), re-deriving only
        what the change reaches.

        `touched` holds the indexes of the rules whose answers the change may alter
        (touched_rules). Stratum by stratum, only the touched rules the asked ones depend on
        are asked again, over the lower strata's answers as the change leaves them (the frozen
        facts of a changed predicate are swapped for its new answers, and put back after);
        every other rule keeps its answers for the case itself (case_tables, asked before the
        delta). A rule the change cannot reach gives the same answers over the same facts, so
        the tables equal those a full ask would give."""
        self._activate()
        base = self._case_tables.get((pack, case_key))
        if base is None:
            raise RuntimeError("variant_tables needs the case's own tables: ask case_tables before the fact_delta")
        stages = self._stages[pack]
        answers = self._frozen_answers[(pack, case_key)]
        delta = self._delta_facts[-1]
        reading = self.ruleset.rules_reading(delta.facts)
        base_heads = self._base_heads[(pack, case_key)]
        number = self.ruleset.number
        asked = tuple([number[r.id] for r in rules])
        tables, now_answers, changed, facts = {}, dict(answers), set(), None
        dirty = reading  # the rules reading a changed fact, and once answers change, their readers too
        swapped = None  # the frozen facts swapped: a block of changes (_Changes) opened at the first
        try:
            for level, candidates, later in stages.plan(asked, touched):
                # A candidate is asked again only if it reads a changed fact or a predicate
                # whose answers this variant changed; the others keep their base tables. With
                # no answer changed and no later candidate reading a changed fact, none is.
                if not changed and reading.isdisjoint(later):
                    break
                todo = dirty.intersection(candidates)
                if not todo:
                    continue
                if facts is None:
                    facts = dict(self._fact_sets)
                    for pred, (gone, new) in delta.by_pred.items():
                        facts[pred] = self._canonical(facts.get(pred, _NONE) - gone | new)
                asked_here = stages.closed(todo)
                self._stratum(stages, level, asked_here, facts, now_answers, case_key, tables)
                for pred in stages.frozen_heads(asked_here):
                    numbers = stages.numbers[pred]
                    for n in numbers:
                        if n in tables and tables[n] is not base[n] and tables[n] != base[n]:
                            break
                    else:
                        continue  # every rule kept the case's own witnesses, so the predicate its answers
                    now = set()
                    for rule, n in zip(stages.by_head[pred], numbers):
                        now.update(self.head_tuples(rule, tables[n]) if n in tables else base_heads[n])
                    if now == answers[pred]:
                        continue
                    now_answers[pred] = self._canonical(frozenset(now))
                    changed.add(pred)
                    dirty = dirty | stages.readers.get(pred, _NONE)
                    if swapped is None:
                        swapped = _Changes([])
                        self._lazy.append(swapped)
                    name = stages.frozen_names[pred]
                    swapped.changes.extend([(name, v, False) for v in answers[pred] - now] + [(name, v, True) for v in now - answers[pred]])
        finally:
            if swapped is not None:
                self._undo(swapped)
        return {n: tables[n] if n in tables else base[n] for n in asked}

    def _compile_stratum(self, stages, todo: tuple) -> tuple:
        """(engine name, rules) of a union of some of a stratum's rules."""
        name = _internal(f"p{stages.number}_subset_{len(self._subset_unions)}")
        chosen = [self.rules[i] for i in todo]
        self._add_union(name, chosen, stages.engine_name)
        return name, chosen

    @contextmanager
    def case_facts(self, facts: list):
        """Assert (pred, values) case facts for the duration of a block, then retract them.

        Like a fact_delta's, they reach the engine before its first ask in the block, with
        the frozen answers case_tables adds: a case the rule memo answers whole asserts
        nothing."""
        self._activate()
        self._case_tables.clear()
        sets = {}
        for pred, values in facts:
            sets.setdefault(pred, set()).add(tuple(values))
        self._fact_sets = {pred: self._canonical(frozenset(found)) for pred, found in sets.items()}
        frame = self._case_frame = _Changes([(_pyname(pred), tuple(values), True) for pred, values in facts])
        self._lazy.append(frame)
        try:
            yield self
        finally:
            self._case_frame = None
            self._undo(frame)
            self._case_tables.clear()
            self._frozen_answers.clear()
            self._base_heads.clear()
            self._fact_sets = {}

    @contextmanager
    def fact_delta(self, add, remove):
        """Within an asserted case: retract `remove` and assert `add` for a block, then undo.

        The engine sees the change from the first ask inside the block (_sync): most
        variants are answered from the rule memo without one, and then nothing is asserted or
        retracted."""
        self._activate()
        frame = _Changes([(_pyname(p), tuple(vals), False) for p, vals in remove]
                         + [(_pyname(p), tuple(vals), True) for p, vals in add])
        self._deltas += 1
        self._delta_facts.append(_Delta(add, remove))
        self._lazy.append(frame)
        try:
            yield self
        finally:
            self._deltas -= 1
            self._delta_facts.pop()
            self._undo(frame)

    def _undo(self, frame) -> None:
        """Close the innermost block of changes: undo the changes it made, newest first."""
        self._lazy.pop()
        self._activate()
        for clause, present in reversed(frame.made):
            (pyEngine.retract if present else pyEngine.assert_)(clause)

    def _sync(self, reads=None) -> None:
        """Make the pending changes of the open blocks (_Changes) to the engine predicates in
        `reads` (None: to all), outermost block first. A predicate's facts are the same
        whatever the order its changes and other predicates' are made in, so an ask that
        reads few predicates asserts and retracts only theirs."""
        for frame in self._lazy:
            changes, pending = frame.changes, frame.pending
            if frame.filed < len(changes):
                for change in changes[frame.filed:]:
                    found = pending.get(change[0])
                    if found is None:
                        pending[change[0]] = [change]
                    else:
                        found.append(change)
                frame.filed = len(changes)
            if not pending:
                continue
            for pred in [p for p in pending if p in reads] if reads is not None else list(pending):
                for name, values, present in pending.pop(pred):
                    clause = self._fact_clause(name, values)
                    (pyEngine.assert_ if present else pyEngine.retract)(clause)
                    frame.made.append((clause, present))

    def values(self, pred: str, *args) -> list:
        return self.ask(pred, tuple(args))
