"""The loaded rules as pure data: files found, parsed (through the parsed-rule cache) and
checked, indexed, and the dependency analysis decisions use. No pyDatalog here: a RuleSet is
picklable and can be built, shared between threads and tested without the engine.
"""
from __future__ import annotations

import hashlib
import os
import json
import stat
from pathlib import Path
from typing import Iterable, Optional

from ..lang.checks import Problem, case_dependent, check_files
from ..lang.contract import APPLIES_POLICY, DISPLAY_NAME, POLICY_PACK, REPORT_ARITY, REPORT_BASIS
from ..lang.graph import reachable
from ..lang.objects import Const, Literal, RuleError
from ..lang.serial import from_data, to_data

RULE_SUFFIX = ".dl"
_CACHE_VERSION = 3
_LANG = Path(__file__).resolve().parent.parent / "lang"


class RulesError(Exception):
    """The rule files have errors; `problems` lists them as file:line: level: message."""

    def __init__(self, problems: list):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def sort_key(values) -> tuple:
    """A total order on tuples of mixed ints and strings: the 'least witness' order."""
    return tuple([(0, v, "") if isinstance(v, int) else (1, 0, v) for v in values])


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


# Suffixes of files that look like rule files but are not read: saying so beats ignoring a
# file its author thinks is loaded.
_LOOKALIKE_SUFFIXES = {".pl", ".pro", ".prolog", ".lp", ".datalog", ".dlog", ".rules"}


def rule_files(folder: Path, shown_as: Optional[str], problems: Optional[list] = None) -> list:
    """(path, shown name) of every rule file (`*.dl`) below a folder, sorted so load order is
    stable. A folder without one is an error; a file that looks like a rule file but is not
    read (`x.pl`, `X.DL`) is a warning, both added to `problems` when it is given."""
    if not folder.is_dir():
        raise RulesError([Problem(str(folder), 0, "error", "not a folder of rule files")])

    def shown(path):
        rel = path.relative_to(folder).as_posix()
        return f"{shown_as}/{rel}" if shown_as else str(Path(str(folder)) / rel)

    found, lookalikes = [], []
    for path in sorted(folder.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix == RULE_SUFFIX:
            found.append((path, shown(path)))
        elif path.suffix.lower() == RULE_SUFFIX or path.suffix.lower() in _LOOKALIKE_SUFFIXES:
            lookalikes.append(path)
    if problems is not None:
        for path in lookalikes:
            problems.append(Problem(shown(path), 0, "warning",
                                    f"not read: rule files end in {RULE_SUFFIX} (this one ends in {path.suffix})"))
        if not found:
            problems.append(Problem(str(folder), 0, "error", f"no rule file ({RULE_SUFFIX}) in this folder"))
    return found


def _read_rule_file(path: Path, name: str, problems: list) -> Optional[str]:
    """A rule file's text, or None with the problem added: unreadable, not UTF-8, or with a
    NUL character (which no rule text needs and which would blur the rule-set digest)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(name, 0, "error", f"cannot read the file: {exc.strerror or exc}"))
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        problems.append(Problem(name, line, "error", f"not UTF-8 text: byte 0x{raw[exc.start]:02x} at offset "
                                                     f"{exc.start} (rule files are UTF-8)"))
        return None
    if "\0" in text:
        problems.append(Problem(name, text[:text.index("\0")].count("\n") + 1, "error",
                                "a NUL character: rule files are text"))
        return None
    return text


# --- the parsed-rule cache ----------------------------------------------------------------
# Parsing the shipped rules costs about 0.5 s of a 1.1-1.6 s cold `explain` (benchmarks/
# explain_speed.py), so parsed rules are kept between runs. The cache holds plain JSON
# (lang.serial), never a pickle: a planted file is at worst wrong data, which the digest key and
# the reader's type checks turn into a miss. Its folder is made private (0700); a file that is
# not a regular file owned by this user, or is writable by others, is never read.

def _cache_path(digest: str) -> Optional[Path]:
    """Where parsed rules are kept: $IONM_LOGIC_CACHE (a folder, or "off"), else the user cache."""
    chosen = os.environ.get("IONM_LOGIC_CACHE")
    if chosen == "off":
        return None
    base = chosen or os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "ionm-logic" / f"rules-v{_CACHE_VERSION}-{digest}.json"


def _trusted(fd: int) -> bool:
    """Whether an open cache file is a regular file of this user's that nobody else may write."""
    info = os.fstat(fd)
    owner = getattr(os, "getuid", lambda: info.st_uid)()
    return stat.S_ISREG(info.st_mode) and info.st_uid == owner and not info.st_mode & 0o022


def _read_cache(digest: str):
    """Parsed and checked rule files for exactly these file texts, if an earlier run kept them;
    None for a missing, foreign, unreadable or malformed file."""
    path = _cache_path(digest)
    if path is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        with os.fdopen(fd, "rb") as fh:
            if not _trusted(fh.fileno()):
                return None
            data = json.loads(fh.read().decode("utf-8"))
        files, problems = from_data(data)
    except (OSError, ValueError, RecursionError):  # SerialError and JSON errors are ValueErrors
        return None
    if data.get("key") != digest:
        return None
    return files, problems


def _write_cache(digest: str, files, problems) -> None:
    path = _cache_path(digest)
    if path is None:
        return
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path.parent, 0o700)
        data = to_data(files, problems)
        data["key"] = digest
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError:
        try:  # a read-only or blocked cache folder only costs the next run a re-parse
            tmp.unlink()
        except OSError:
            pass


def language_digest() -> bytes:
    """The sha256 of the rule language's own source (every module of lang/): parsed rules
    kept by another version of the parser, checker or rule objects are never read back."""
    code = hashlib.sha256()
    for module in sorted(_LANG.glob("*.py")):
        _frame(code, module.name.encode(), module.read_bytes())
    return code.digest()


def _frame(digest, *parts: bytes) -> None:
    """Add each part with its length in front, so that no two sequences of parts hash alike."""
    for part in parts:
        digest.update(len(part).to_bytes(8, "big") + part)


def load_rules(extra_dirs: Iterable = ()) -> "RuleSet":
    """The shipped rules plus every `extra_dirs` folder, parsed (or read from the cache), checked
    and indexed. Raises RulesError when any file has an error."""
    found: list = []  # problems of finding and reading the files
    sources = [(p, name) for p, name in rule_files(shipped_rules_dir(), "rules")]
    for folder in extra_dirs:
        sources += rule_files(Path(folder), None, found)
    texts = []
    for path, name in sources:
        text = _read_rule_file(path, name, found)
        if text is not None:
            texts.append((text, name))
    if any(p.level == "error" for p in found):
        raise RulesError(found)
    digest = hashlib.sha256()
    digest.update(len(texts).to_bytes(8, "big"))
    for text, name in texts:
        _frame(digest, name.encode(), text.encode())
    key = hashlib.sha256(digest.digest() + language_digest()).hexdigest()
    cached = _read_cache(key)
    if cached is not None:
        files, problems = cached
    else:
        files, problems = _parse_and_check(texts)
        _write_cache(key, files, problems)
    problems = found + problems
    errors = [p for p in problems if p.level == "error"]
    if errors:
        raise RulesError(errors)
    return RuleSet(files, problems, digest.hexdigest())


def _parse_and_check(texts) -> tuple:
    """(parsed files, problems). A file that does not parse is reported alone: checking the
    others without its declarations would blame them for what it failed to declare."""
    from ..lang.parse import parse_text  # lark is loaded only when rule text must be parsed

    files, problems = [], []
    for text, name in texts:
        try:
            files.append(parse_text(text, name))
        except RuleError as exc:
            problems.append(Problem(exc.file, exc.line, "error",
                                    (f"column {exc.column}: " if exc.column else "") + exc.message))
        except RecursionError:
            problems.append(Problem(name, 0, "error", "nested too deeply to read"))
    if not problems:
        try:
            problems = check_files(files)
        except RecursionError:  # pragma: no cover - the checks walk iteratively; a last guard
            problems = [Problem(files[-1].path if files else "", 0, "error", "the rules nest too deeply to check")]
    return files, problems


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
        self._closure, self._report_rules, self._pack_rules, self._touched, self._reading = {}, {}, {}, {}, {}

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

    def rules_reading(self, facts) -> frozenset:
        """Numbers of the rules with a body literal that one of the (pred, values) facts matches,
        constants included."""
        key = frozenset(facts)
        found = self._reading.get(key)
        if found is None:
            found = frozenset(self.number[rule.id] for pred, values in key for rule, args in self._literals.get(pred, ())
                              if all(not isinstance(a, Const) or a.value == v for a, v in zip(args, values)))
            if len(self._reading) > 4096:  # keys repeat across cases; bound it all the same
                self._reading.clear()
            self._reading[key] = found
        return found

    def touched_rules(self, facts) -> frozenset:
        """Numbers of the rules whose answers may change when the (pred, values) facts change:
        the rules reading one of the facts, and every rule that uses a touched rule's head
        predicate."""
        key = frozenset(facts)
        found = self._touched.get(key)
        if found is not None:
            return found
        found = frozenset(reachable(self.rules_reading(key), lambda n: self._users.get(self.rules[n].head.pred, ())))
        if len(self._touched) > 4096:  # keys repeat across cases; bound it all the same
            self._touched.clear()
        self._touched[key] = found
        return found

    @staticmethod
    def head_tuples(rule, rows) -> list:
        """The head tuple each witness row of `rule` derives."""
        picks = rule.__dict__.get("_head_picks")  # kept on the rule, as Rule.variables keeps its own
        if picks is None:
            names = rule.variables()
            picks = rule.__dict__["_head_picks"] = tuple(
                (True, a.value) if isinstance(a, Const) else (False, names.index(a.name)) for a in rule.head.args)
        return [tuple([value if const else row[value] for const, value in picks]) for row in rows]


def _body_preds(rules):
    return [item.atom.pred for rule in rules for item in rule.body if isinstance(item, Literal)]
