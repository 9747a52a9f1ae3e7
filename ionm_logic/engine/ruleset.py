"""The loaded rules as pure data: files found, parsed (through the parsed-rule cache) and
checked, indexed, and the dependency analysis decisions use. No pyDatalog here: a RuleSet is
picklable and can be built, shared between threads and tested without the engine.
"""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Iterable, Optional

from ..lang.checks import Problem, case_dependent, check_files
from ..lang.contract import APPLIES_POLICY, DISPLAY_NAME, POLICY_PACK, REPORT_ARITY, REPORT_BASIS
from ..lang.graph import reachable
from ..lang.objects import Const, Literal, RuleError

RULE_SUFFIX = ".dl"
_CACHE_VERSION = 2
_LANG = Path(__file__).resolve().parent.parent / "lang"


class RulesError(Exception):
    """The rule files have errors; `problems` lists them as file:line: level: message."""

    def __init__(self, problems: list):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def sort_key(values) -> tuple:
    """A total order on tuples of mixed ints and strings: the 'least witness' order."""
    return tuple((0, v, "") if isinstance(v, int) else (1, 0, v) for v in values)


# --- finding, hashing and caching rule files ------------------------------------------

def shipped_rules_dir() -> Path:
    """The rules/ folder: packaged inside ionm_logic when installed, at the project root in a checkout."""
    package = Path(__file__).resolve().parent.parent
    for candidate in (package / "rules", package.parent / "rules"):
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


def _cache_path(digest: str) -> Optional[Path]:
    """Where parsed rules are kept: $IONM_LOGIC_CACHE (a folder, or "off"), else the user cache."""
    chosen = os.environ.get("IONM_LOGIC_CACHE")
    if chosen == "off":
        return None
    base = chosen or os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ionm-logic" / f"rules-v{_CACHE_VERSION}-{digest}.pickle"


def _read_cache(digest: str):
    """Parsed and checked rule files for exactly these file texts, if an earlier run kept them."""
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


def language_digest() -> bytes:
    """The sha256 of the rule language's own source (every module of lang/): parsed rules
    pickled by another version of the parser, checker or rule objects are never read back."""
    code = hashlib.sha256()
    for module in sorted(_LANG.glob("*.py")):
        code.update(module.name.encode() + b"\0" + module.read_bytes() + b"\0")
    return code.digest()


def load_rules(extra_dirs: Iterable = ()) -> "RuleSet":
    """The shipped rules plus every `extra_dirs` folder, parsed (or read from the cache), checked
    and indexed. Raises RulesError when any file has an error."""
    sources = [(p, name) for p, name in rule_files(shipped_rules_dir(), "rules")]
    for folder in extra_dirs:
        sources += rule_files(Path(folder), None)
    texts = [(path.read_text(encoding="utf-8"), name) for path, name in sources]
    digest = hashlib.sha256()
    for text, name in texts:
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    key = hashlib.sha256(digest.digest() + language_digest()).hexdigest()
    cached = _read_cache(key)
    if cached is not None:
        files, problems = cached
    else:
        from ..lang.parse import parse_text  # lark is loaded only when rule text must be parsed

        files, problems = [], []
        for text, name in texts:
            try:
                files.append(parse_text(text, name))
            except RuleError as exc:
                problems.append(Problem(exc.file, exc.line, "error",
                                        (f"column {exc.column}: " if exc.column else "") + exc.message))
        problems += check_files(files)
        _write_cache(key, (files, problems))
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise RulesError(errors)
    return RuleSet(files, problems, digest.hexdigest())


# --- the rule set -----------------------------------------------------------------------

class RuleSet:
    """Checked rule files, indexed, with the dependency analysis a decision needs.

    A rule's number (`index`) is its position in load order; the engine names its compiled
    predicates by it and tables are keyed by it."""

    def __init__(self, files: list, problems: list, sha256: str):
        self.files = files
        self.problems = problems
        self.sha256 = sha256
        self.decls = {d.name: d for f in files for d in f.decls}
        self.citations = {c.key: c for f in files for c in f.citations}
        self.facts = [fact for f in files for fact in f.facts]
        self.rules = [rule for f in files for rule in f.rules]
        self.number = {rule.id: i for i, rule in enumerate(self.rules)}
        self.rules_by_id = {r.id: r for r in self.rules}
        self.rules_by_head = {}
        for rule in self.rules:
            self.rules_by_head.setdefault(rule.head.pred, []).append(rule)
        self.fact_index = {}
        for fact in self.facts:
            self.fact_index.setdefault((fact.atom.pred, tuple(a.value for a in fact.atom.args)), fact)
        self.case_dependent = case_dependent(files, self.decls)
        # How sentences name constants that have a display name (display_name/2 facts).
        self.display_names = {f.atom.args[0].value: f.atom.args[1].value for f in self.facts
                              if f.atom.pred == DISPLAY_NAME}
        self.packs = sorted({f.atom.args[0].value for f in self.facts if f.atom.pred == POLICY_PACK})
        self.width = max((len(r.variables()) for r in self.rules), default=0)
        # Body literals by predicate, and the rules using each predicate (touched_rules).
        self._literals, self._users = {}, {}
        for rule in self.rules:
            for item in rule.body:
                if isinstance(item, Literal):
                    self._literals.setdefault(item.atom.pred, []).append((rule, item.atom.args))
                    self._users.setdefault(item.atom.pred, set()).add(self.number[rule.id])
        self._closure, self._report_rules, self._pack_rules, self._touched = {}, {}, {}, {}

    def index(self, rule) -> int:
        return self.number[rule.id]

    def role(self, rule) -> str:
        return self.decls[rule.head.pred].role

    def rule_count(self) -> int:
        return len(self.rules)

    def fact_count(self) -> int:
        return len(self.facts)

    @staticmethod
    def gate(rule):
        """The pack a rule's applies_policy(...) literal names, if any."""
        for item in rule.body:
            if (isinstance(item, Literal) and not item.negated and item.atom.pred == APPLIES_POLICY
                    and isinstance(item.atom.args[1], Const)):
                return item.atom.args[1].value
        return None

    def report_rules(self, pack: str) -> list:
        """The finding, consideration and observation rules that can apply under `pack`: a rule
        whose body names another pack in applies_policy(...) cannot."""
        found = self._report_rules.get(pack)
        if found is None:
            found = self._report_rules[pack] = [r for r in self.rules if self.role(r) in REPORT_ARITY
                                                and self.gate(r) in (None, pack)]
        return found

    def pack_rules(self, pack: str) -> list:
        """The case-dependent rules a decision under `pack` can use: the pack's report rules,
        the anatomy and line predicates a report shows, and every rule they depend on, less the
        rules gated to another pack (whose bodies are not followed either)."""
        found = self._pack_rules.get(pack)
        if found is None:
            usable = [r for r in self.rules if self.gate(r) in (None, pack)]
            by_head = {}
            for rule in usable:
                by_head.setdefault(rule.head.pred, []).append(rule)
            wanted = reachable({r.head.pred for r in self.report_rules(pack)} | set(REPORT_BASIS),
                               lambda pred: _body_preds(by_head.get(pred, ())))
            found = self._pack_rules[pack] = [r for r in usable if r.head.pred in wanted
                                              and r.head.pred in self.case_dependent]
        return found

    def pack_rules_by_head(self, pack: str) -> dict:
        by_head = {}
        for rule in self.pack_rules(pack):
            by_head.setdefault(rule.head.pred, []).append(rule)
        return by_head

    def depends_on(self, pred: str) -> set:
        """Every predicate `pred` is derived from, itself included."""
        closure = self._closure.get(pred)
        if closure is None:
            closure = self._closure[pred] = reachable([pred], lambda p: _body_preds(self.rules_by_head.get(p, ())))
        return closure

    def touched_rules(self, facts) -> frozenset:
        """Numbers of the rules whose answers may change when the (pred, values) facts change:
        a fact touches a rule only if it matches one of the rule's body literals, constants
        included; a touched rule touches every rule that uses its head predicate."""
        key = frozenset(facts)
        found = self._touched.get(key)
        if found is not None:
            return found
        direct = {self.number[rule.id] for pred, values in key for rule, args in self._literals.get(pred, ())
                  if all(not isinstance(a, Const) or a.value == v for a, v in zip(args, values))}
        found = frozenset(reachable(direct, lambda n: self._users.get(self.rules[n].head.pred, ())))
        if len(self._touched) > 4096:  # keys repeat across cases; bound it all the same
            self._touched.clear()
        self._touched[key] = found
        return found

    @staticmethod
    def head_tuples(rule, rows) -> list:
        """The head tuple each witness row of `rule` derives."""
        names = rule.variables()
        picks = [(True, a.value) if isinstance(a, Const) else (False, names.index(a.name)) for a in rule.head.args]
        return [tuple([value if const else row[value] for const, value in picks]) for row in rows]


def _body_preds(rules):
    return [item.atom.pred for rule in rules for item in rule.body if isinstance(item, Literal)]
