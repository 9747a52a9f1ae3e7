"""Load rule files into one pyDatalog knowledge base and query it through the Python API only.

pyDatalog keeps one knowledge base per thread. A KnowledgeBase compiles itself into the calling
thread's engine and recompiles if another KnowledgeBase took the thread in between, so each
worker (process or thread) holds exactly one loaded base. Case facts are asserted, queried and
retracted on it; rule text and case data never pass through pyDatalog's string APIs.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional

from pyDatalog import pyEngine
from pyDatalog.Logic import Logic

from .checks import Problem, case_dependent, check_files
from .rulelang import Comparison, Const, Literal, RuleError, Var

RULE_SUFFIX = ".dl"


class RulesError(Exception):
    """The rule files have errors; `problems` lists them as file:line: level: message."""

    def __init__(self, problems: list):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


_CACHE_VERSION = 1
# Predicates a report shows besides findings (the anatomical basis, each line's modality, why an
# undecided line is undetermined).
REPORT_BASIS = ("line_modality", "last_cord_level", "most_cranial_operated_level", "structure_at_risk",
                "line_not_encoded")


def _cache_path(digest: str) -> Optional[Path]:
    """Where parsed rules are kept: $IONM_LOGIC_CACHE (a folder, or "off"), else the user cache."""
    chosen = os.environ.get("IONM_LOGIC_CACHE")
    if chosen == "off":
        return None
    base = chosen or os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ionm-logic" / f"rules-v{_CACHE_VERSION}-{digest}.pickle"


def _read_cache(digest: str):
    """Parsed and checked rule files for exactly these file texts, if an earlier run kept them.
    The key is the sha256 of every file's name and text, so an edited file never hits."""
    path = _cache_path(digest)
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh)
    except Exception:  # noqa: BLE001 - a missing, stale or unreadable cache is just a miss
        return None


def _write_cache(digest: str, value) -> None:
    path = _cache_path(digest)
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as fh:
            pickle.dump(value, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home only costs the next run a re-parse


def shipped_rules_dir() -> Path:
    """The rules/ folder: packaged inside ionm_logic when installed, at the project root in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "rules", here.parent / "rules"):
        if (candidate / "vocabulary.dl").is_file():
            return candidate
    try:
        from importlib.resources import files

        packaged = Path(str(files("ionm_logic.rules")))
        if (packaged / "vocabulary.dl").is_file():
            return packaged
    except (ModuleNotFoundError, TypeError):  # pragma: no cover - broken install
        pass
    raise FileNotFoundError("the shipped rules/ folder is missing from this installation")


def rule_files(folder: Path, shown_as: Optional[str]) -> list:
    """(path, shown name) of every rule file below a folder, sorted so load order is stable."""
    if not folder.is_dir():
        raise RulesError([Problem(str(folder), 0, "error", "not a folder of rule files")])
    found = sorted(p for p in folder.rglob("*" + RULE_SUFFIX) if p.is_file())
    out = []
    for path in found:
        rel = path.relative_to(folder).as_posix()
        out.append((path, f"{shown_as}/{rel}" if shown_as else str(Path(str(folder)) / rel)))
    return out


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


def sort_key(values) -> tuple:
    """A total order on tuples of mixed ints and strings: the 'least witness' order."""
    return tuple((0, v, "") if isinstance(v, int) else (1, 0, v) for v in values)


def _pyname(pred: str) -> str:
    return "ionm_" + pred


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


class KnowledgeBase:
    """Parsed, checked and compiled rules: facts, rules, declarations and citations."""

    def __init__(self, extra_dirs: Iterable = ()):
        sources = [(p, name) for p, name in rule_files(shipped_rules_dir(), "rules")]
        for folder in extra_dirs:
            sources += rule_files(Path(folder), None)
        texts = [(path.read_text(encoding="utf-8"), name) for path, name in sources]
        digest = hashlib.sha256()
        for text, name in texts:
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
        # The cache key adds the parser's and checker's own source: a new ionm-logic never reads
        # rule objects an older one pickled.
        code = hashlib.sha256(digest.digest())
        for module in ("rulelang.py", "ruleparse.py", "checks.py"):
            code.update((Path(__file__).parent / module).read_bytes())
        cached = _read_cache(code.hexdigest())
        if cached is not None:
            self.files, problems = cached
        else:
            from .ruleparse import parse_text  # lark is loaded only when rule text must be parsed

            self.files, problems = [], []
            for text, name in texts:
                try:
                    self.files.append(parse_text(text, name))
                except RuleError as exc:
                    problems.append(Problem(exc.file, exc.line, "error",
                                            (f"column {exc.column}: " if exc.column else "") + exc.message))
            problems += check_files(self.files)
            _write_cache(code.hexdigest(), (self.files, problems))
        self.sha256 = digest.hexdigest()
        self.problems = problems
        errors = [p for p in problems if p.level == "error"]
        if errors:
            raise RulesError(errors)

        self.decls = {d.name: d for f in self.files for d in f.decls}
        self.citations = {c.key: c for f in self.files for c in f.citations}
        self.facts = [fact for f in self.files for fact in f.facts]
        self.rules = [rule for f in self.files for rule in f.rules]
        for index, rule in enumerate(self.rules):
            rule.index = index
        self.rules_by_id = {r.id: r for r in self.rules}
        self.rules_by_head = {}
        for rule in self.rules:
            self.rules_by_head.setdefault(rule.head.pred, []).append(rule)
        self.fact_index = {}
        for fact in self.facts:
            key = (fact.atom.pred, tuple(a.value for a in fact.atom.args))
            self.fact_index.setdefault(key, fact)
        self.case_dependent = case_dependent(self.files, self.decls)
        # How sentences name constants that have a display name (display_name/2 facts).
        self.display_names = {f.atom.args[0].value: f.atom.args[1].value for f in self.facts
                              if f.atom.pred == "display_name"}
        self._global_tables = {}
        self.proof_memo = {}  # proofs of atoms no case fact reaches, shared by all cases
        self._rule_queries = {}
        self._closure = {}
        self._report_rules = {}
        self._touched = {}
        self._literal_index = None
        self._users = {}
        self._variants = {}
        self._frozen = {}  # frozen engine predicate -> the clauses of its answers for the current case
        self._answers = {}  # answers of predicates no case fact reaches
        self._logic = None
        self._thread = None
        self._compile()

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
            witness = pyEngine.Literal(f"ionm_rule_{rule.index}", variables)
            _add_clause(witness, self._compiled_body(rule))
            head = pyEngine.Literal(_pyname(rule.head.pred), [self._term(a) for a in rule.head.args])
            _add_clause(head, self._compiled_body(rule))
        # Per pack, one predicate that unions the witnesses of every case-dependent rule a
        # decision under that pack can use, padded to one width: asking it once evaluates them
        # all in one pass, sharing tabled subgoals, where asking rule by rule would recompute
        # shared subgoals on every ask.
        self._width = max((len(r.variables()) for r in self.rules), default=0)
        self._pack_rules, self._pack_by_head = {}, {}
        packs = sorted({f.atom.args[0].value for f in self.facts if f.atom.pred == "policy_pack"})
        for number, pack in enumerate(packs):
            name = f"ionm_case_witness_{number}"
            chosen = self.pack_rules(pack)
            self._pack_rules[pack] = (name, chosen)
            by_head = self._pack_by_head[pack] = {}
            for rule in chosen:
                by_head.setdefault(rule.head.pred, []).append(rule)
            self._add_union(name, chosen)
        self._logic = Logic(True)
        self._thread = threading.get_ident()

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
        current = getattr(Logic.tl, "logic", None)
        if current is not self._logic or self._thread != threading.get_ident():
            self._global_tables.clear()
            self._rule_queries.clear()
            self._variants.clear()
            self._frozen.clear()
            self._compile()

    # --- queries ------------------------------------------------------------------

    def ask(self, pred: str, args: tuple) -> list:
        """Ground tuples of `pred` matching `args` (a value, or None for any), least first."""
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
        independent = rule.head.pred not in self.case_dependent
        if independent and rule.index in self._global_tables:
            return self._global_tables[rule.index]
        self._activate()
        query = self._rule_queries.get(rule.index)
        if query is None:
            query = self._rule_queries[rule.index] = pyEngine.Literal(
                f"ionm_rule_{rule.index}", [pyEngine.Var(v) for v in rule.variables()])
        rows = sorted({tuple(decode(v) for v in row) for row in query.ask() or ()}, key=sort_key)
        if independent:
            self._global_tables[rule.index] = rows
        return rows

    def pack_rules(self, pack: str) -> list:
        """The case-dependent rules a decision under `pack` can use: the pack's report rules,
        the anatomy and line predicates a report shows, and every rule they depend on, less the
        rules gated to another pack (whose bodies are not followed either)."""
        usable = [r for r in self.rules if self._gate(r) in (None, pack)]
        by_head = {}
        for rule in usable:
            by_head.setdefault(rule.head.pred, []).append(rule)
        wanted = {r.head.pred for r in self.report_rules(pack)} | set(REPORT_BASIS)
        todo = list(wanted)
        while todo:
            for rule in by_head.get(todo.pop(), ()):
                for item in rule.body:
                    if isinstance(item, Literal) and item.atom.pred not in wanted:
                        wanted.add(item.atom.pred)
                        todo.append(item.atom.pred)
        return [r for r in usable if r.head.pred in wanted and r.head.pred in self.case_dependent]

    def case_tables(self, pack: str, case_key: str = "case") -> dict:
        """The witness table of every rule `pack_rules(pack)` names, for one case's facts, in
        one ask."""
        self._activate()
        name, rules = self._pack_rules[pack]
        return self._ask_union(name, rules, case_key)

    def _add_union(self, name: str, rules: list, engine_name=_pyname) -> None:
        """name(RuleIndex, Case, Witness..., padding) for each rule: asked with Case bound, the
        binding reaches every rule body, so each subgoal is called in one pattern and tabled
        once (a rule derived from case facts takes Case as its first argument)."""
        for rule in rules:
            variables = [pyEngine.Var(v) for v in rule.variables()]
            padding = [pyEngine.Term_of(encode(""))] * (self._width - len(variables))
            head = pyEngine.Literal(name, [pyEngine.Term_of(rule.index), self._term(rule.head.args[0]),
                                           *variables, *padding])
            _add_clause(head, self._compiled_body(rule, engine_name))

    def _ask_union(self, name: str, rules: list, case_key: str) -> dict:
        """Witness tables of the rules a union predicate (_add_union) holds, for one case."""
        query = pyEngine.Literal(name, [pyEngine.Var("K"), pyEngine.Term_of(encode(case_key)),
                                        *[pyEngine.Var(f"W{i}") for i in range(self._width)]])
        tables = {rule.index: [] for rule in rules}
        for row in query.ask() or ():
            index = row[0]
            width = len(self.rules[index].variables())
            tables[index].append(tuple(decode(v) for v in row[2:2 + width]))
        for index, rows in tables.items():
            tables[index] = sorted(set(rows), key=sort_key)
        return tables

    def variant_tables(self, rules: list, touched: frozenset, pack: str, base_tables: dict,
                       case_key: str = "case") -> dict:
        """Witness tables of case-dependent rules after the case facts changed (fact_delta),
        re-deriving only what the change reaches.

        `touched` holds the indexes of the rules whose answers the change may alter
        (touched_rules). Every other rule keeps the answers it has in `base_tables` (the case's
        tables under `pack`, from case_tables): they are asserted once per case as facts of
        frozen predicates and read instead of re-deriving them. A rule the change cannot reach
        gives the same answers over the same facts, so the tables equal those a full ask would
        give, without re-deriving the anatomy, lines and procedure under every variant."""
        self._activate()
        key = (tuple(r.index for r in rules), touched, pack)
        compiled = self._variants.get(key)
        if compiled is None:
            compiled = self._variants[key] = self._compile_variant(rules, touched, pack)
        name, frozen = compiled
        for engine_pred, kept in frozen:
            if engine_pred in self._frozen:
                continue
            tuples = set()
            for rule in kept:
                tuples.update(self.head_tuples(rule, base_tables[rule.index]))
            clauses = [_engine_clause(engine_pred, [encode(v) for v in row]) for row in sorted(tuples, key=sort_key)]
            for clause in clauses:
                pyEngine.assert_(clause)
            self._frozen[engine_pred] = clauses
        return self._ask_union(name, rules, case_key)

    @staticmethod
    def head_tuples(rule, rows) -> list:
        """The head tuple each witness row of `rule` derives."""
        names = rule.variables()
        picks = [(True, a.value) if isinstance(a, Const) else (False, names.index(a.name)) for a in rule.head.args]
        return [tuple([value if const else row[value] for const, value in picks]) for row in rows]

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
            if any(r.index in touched for r in self.rules_by_head[pred]):
                if pred not in copied:
                    copied.add(pred)
                    todo.append(pred)
                return f"ionm_v{number}_{pred}"
            frozen.setdefault(f"ionm_frozen_{pred}", (pred, tuple(pack_by_head.get(pred, ()))))
            return f"ionm_frozen_{pred}"

        name = f"ionm_variant_{number}"
        self._add_union(name, rules, engine_name)
        while todo:
            pred = todo.pop()
            kept = tuple(r for r in pack_by_head.get(pred, ()) if r.index not in touched)
            arguments = [pyEngine.Var(f"A{i}") for i in range(self.decls[pred].arity)]
            if kept:
                frozen[f"ionm_v{number}_kept_{pred}"] = (pred, kept)
                _add_clause(pyEngine.Literal(f"ionm_v{number}_{pred}", arguments),
                            [pyEngine.Literal(f"ionm_v{number}_kept_{pred}", arguments)])
            for rule in pack_by_head.get(pred, ()):
                if rule.index in touched:
                    head = pyEngine.Literal(f"ionm_v{number}_{pred}", [self._term(a) for a in rule.head.args])
                    _add_clause(head, self._compiled_body(rule, engine_name))
        for engine_pred, (pred, _kept) in sorted(frozen.items()):
            _define(engine_pred, self.decls[pred].arity)
        for pred in sorted(copied):
            _define(f"ionm_v{number}_{pred}", self.decls[pred].arity)
        return name, tuple((engine_pred, kept) for engine_pred, (_pred, kept) in sorted(frozen.items()))

    @staticmethod
    def _gate(rule):
        """The pack a rule's applies_policy(...) literal names, if any."""
        for item in rule.body:
            if (isinstance(item, Literal) and not item.negated and item.atom.pred == "applies_policy"
                    and isinstance(item.atom.args[1], Const)):
                return item.atom.args[1].value
        return None

    def depends_on(self, pred: str) -> set:
        """Every predicate `pred` is derived from, itself included."""
        closure = self._closure.get(pred)
        if closure is None:
            closure, todo = {pred}, [pred]
            while todo:
                for rule in self.rules_by_head.get(todo.pop(), ()):
                    for item in rule.body:
                        if isinstance(item, Literal) and item.atom.pred not in closure:
                            closure.add(item.atom.pred)
                            todo.append(item.atom.pred)
            self._closure[pred] = closure
        return closure

    def touched_rules(self, facts) -> frozenset:
        """Indexes of the rules whose answers may change when the (pred, values) facts change:
        a fact touches a rule only if it matches one of the rule's body literals, constants
        included; a touched rule touches every rule that uses its head predicate."""
        key = frozenset(facts)
        found = self._touched.get(key)
        if found is not None:
            return found
        if self._literal_index is None:
            self._literal_index, self._users = {}, {}
            for rule in self.rules:
                for item in rule.body:
                    if isinstance(item, Literal):
                        self._literal_index.setdefault(item.atom.pred, []).append((rule, item.atom.args))
                        self._users.setdefault(item.atom.pred, set()).add(rule.index)
        touched = set()
        for pred, values in key:
            for rule, args in self._literal_index.get(pred, ()):
                if all(not isinstance(a, Const) or a.value == v for a, v in zip(args, values)):
                    touched.add(rule.index)
        todo = list(touched)
        heads_done = set()
        while todo:
            head = self.rules[todo.pop()].head.pred
            if head in heads_done:
                continue
            heads_done.add(head)
            for index in self._users.get(head, ()):
                if index not in touched:
                    touched.add(index)
                    todo.append(index)
        if len(self._touched) > 4096:  # keys repeat across cases; bound it all the same
            self._touched.clear()
        found = self._touched[key] = frozenset(touched)
        return found

    def report_rules(self, pack: str) -> list:
        """The finding, consideration and observation rules that can apply under `pack`: a rule
        whose body names another pack in applies_policy(...) cannot."""
        cached = self._report_rules.get(pack)
        if cached is not None:
            return cached
        out = self._report_rules[pack] = []
        for rule in self.rules:
            if self.decls[rule.head.pred].role not in ("finding", "consideration", "observation"):
                continue
            if self._gate(rule) in (None, pack):
                out.append(rule)
        return out

    @contextmanager
    def case_facts(self, facts: list):
        """Assert (pred, values) case facts for the duration of a block, then retract them."""
        self._activate()
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
        try:
            yield self
        finally:
            self._activate()
            for clause in add:
                pyEngine.retract(clause)
            for clause in remove:
                pyEngine.assert_(clause)

    # --- conveniences over facts --------------------------------------------------

    def values(self, pred: str, *args) -> list:
        return self.ask(pred, tuple(args))

    def rule_count(self) -> int:
        return len(self.rules)

    def fact_count(self) -> int:
        return len(self.facts)
