"""Load rule files into one pyDatalog knowledge base and query it through the Python API only.

pyDatalog keeps one knowledge base per thread. A KnowledgeBase compiles itself into the calling
thread's engine and recompiles if another KnowledgeBase took the thread in between, so each
worker (process or thread) holds exactly one loaded base. Case facts are asserted, queried and
retracted on it; rule text and case data never pass through pyDatalog's string APIs.
"""
from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterable, Optional

from pyDatalog import pyDatalog
from pyDatalog.Logic import Logic
from pyDatalog.pyParser import Term

from .checks import Problem, check_files
from .rulelang import Comparison, Const, Literal, RuleError, Var, parse_text

RULE_SUFFIX = ".dl"


class RulesError(Exception):
    """The rule files have errors; `problems` lists them as file:line: level: message."""

    def __init__(self, problems: list):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


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


class KnowledgeBase:
    """Parsed, checked and compiled rules: facts, rules, declarations and citations."""

    def __init__(self, extra_dirs: Iterable = ()):
        sources = [(p, name) for p, name in rule_files(shipped_rules_dir(), "rules")]
        for folder in extra_dirs:
            sources += rule_files(Path(folder), None)
        self.files = []
        problems = []
        digest = hashlib.sha256()
        for path, name in sources:
            text = path.read_text(encoding="utf-8")
            digest.update(name.encode() + b"\0" + text.encode() + b"\0")
            try:
                self.files.append(parse_text(text, name))
            except RuleError as exc:
                problems.append(Problem(exc.file, exc.line, "error",
                                        (f"column {exc.column}: " if exc.column else "") + exc.message))
        self.sha256 = digest.hexdigest()
        problems += check_files(self.files)
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
        self.case_dependent = self._case_dependent_predicates()
        self._global_tables = {}
        self.proof_memo = {}  # proofs of atoms no case fact reaches, shared by all cases
        self._logic = None
        self._thread = None
        self._compile()

    # --- compilation --------------------------------------------------------------

    def _case_dependent_predicates(self) -> set:
        dependent = {name for name, d in self.decls.items() if d.role == "case"}
        changed = True
        while changed:
            changed = False
            for rule in self.rules:
                if rule.head.pred not in dependent and any(
                        isinstance(i, Literal) and i.atom.pred in dependent for i in rule.body):
                    dependent.add(rule.head.pred)
                    changed = True
        return dependent

    def _compile(self) -> None:
        Logic()  # a fresh engine for this thread
        for name, decl in self.decls.items():
            # Define every declared predicate, so that querying or negating one that has no
            # clauses yet answers "no" instead of raising "Predicate without definition".
            placeholder = [encode("\0undefined")] * decl.arity
            pyDatalog.assert_fact(_pyname(name), *placeholder)
            pyDatalog.retract_fact(_pyname(name), *placeholder)
        for fact in self.facts:
            pyDatalog.assert_fact(_pyname(fact.atom.pred), *[encode(a.value) for a in fact.atom.args])
        for rule in self.rules:
            variables = [Term(v) for v in rule.variables()]
            witness = Term(f"ionm_rule_{rule.index}")
            ordered = ([i for i in rule.body if isinstance(i, Literal) and not i.negated]
                       + [i for i in rule.body if isinstance(i, Comparison)]
                       + [i for i in rule.body if isinstance(i, Literal) and i.negated])
            body = None
            for item in ordered:
                lit = self._compile_item(item)
                body = lit if body is None else body & lit
            witness(*variables) <= body
            head = Term(_pyname(rule.head.pred))(*[self._term(a) for a in rule.head.args])
            head <= witness(*variables)
        self._logic = Logic(True)
        self._thread = threading.get_ident()

    @staticmethod
    def _term(arg):
        return Term(arg.name) if isinstance(arg, Var) else encode(arg.value)

    def _compile_item(self, item):
        if isinstance(item, Literal):
            lit = Term(_pyname(item.atom.pred))(*[self._term(a) for a in item.atom.args])
            return ~lit if item.negated else lit
        left, right = self._term(item.left), self._term(item.right)
        if not isinstance(left, Term):  # constant on the left: mirror the comparison
            left, right = right, left
            op = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}[item.op]
        else:
            op = item.op
        return {"<": left.__lt__, "<=": left.__le__, ">": left.__gt__, ">=": left.__ge__,
                "==": left.__eq__, "!=": left.__ne__}[op](right)

    def _activate(self) -> None:
        current = getattr(Logic.tl, "logic", None)
        if current is not self._logic or self._thread != threading.get_ident():
            self._global_tables.clear()
            self._compile()

    # --- queries ------------------------------------------------------------------

    def ask(self, pred: str, args: tuple) -> list:
        """Ground tuples of `pred` matching `args` (a value, or None for any), least first."""
        self._activate()
        if pred not in self.decls:
            raise KeyError(f"{pred} is not a declared predicate")
        free = [Term(f"Q{i}") if a is None else encode(a) for i, a in enumerate(args)]
        answer = Term(_pyname(pred))(*free).ask()
        rows = []
        for row in answer or []:
            it = iter(row)
            rows.append(tuple(decode(next(it)) if a is None else a for a in args))
        return sorted(set(rows), key=sort_key)

    def rule_table(self, rule) -> list:
        """Every witness (one value per rule variable) of a rule's body, least first.

        Tables of rules that no case fact reaches are computed once; the others are recomputed
        for each case (the caller caches them per case)."""
        independent = rule.head.pred not in self.case_dependent
        if independent and rule.index in self._global_tables:
            return self._global_tables[rule.index]
        self._activate()
        variables = rule.variables()
        answer = Term(f"ionm_rule_{rule.index}")(*[Term(v) for v in variables]).ask()
        rows = sorted({tuple(decode(v) for v in row) for row in answer or []}, key=sort_key)
        if independent:
            self._global_tables[rule.index] = rows
        return rows

    @contextmanager
    def case_facts(self, facts: list):
        """Assert (pred, values) case facts for the duration of a block, then retract them."""
        self._activate()
        asserted = []
        try:
            for pred, values in facts:
                encoded = [encode(v) for v in values]
                pyDatalog.assert_fact(_pyname(pred), *encoded)
                asserted.append((pred, encoded))
            yield self
        finally:
            self._activate()
            for pred, encoded in asserted:
                pyDatalog.retract_fact(_pyname(pred), *encoded)

    # --- conveniences over facts --------------------------------------------------

    def values(self, pred: str, *args) -> list:
        return self.ask(pred, tuple(args))

    def rule_count(self) -> int:
        return len(self.rules)

    def fact_count(self) -> int:
        return len(self.facts)
