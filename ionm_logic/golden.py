"""Golden cases for rule authors: a case plus the determinations a reviewer expects, as data.

A golden file (YAML or JSON) holds one case or a list of them:

    name: "L5-S1 fusion: SSEP is not medically necessary"   # a sentence
    case: ../alif-plif-l5-s1.json      # a path relative to this file, or the case object inline
    payer: anthem-cg-surg-104          # optional override, like --payer
    as_of: 2024-02-01                  # optional override, like --as-of
    why: "..."                         # the reasoning behind the expectation (shown on failure)
    expect:
      overall: not_medically_necessary
      lines:
        - code: 95938                  # or line: 0 (index in services)
          determination: not_medically_necessary
          rules: [CR-CORD-PATHWAY-ABSENT]       # rule ids that must be among the findings
          not_rules: [CR-P2-CORD-AT-RISK]       # rule ids that must not be
          considerations: [CONS-ALIF-VASCULAR-RISK]
          missing: ["/monitoring/professional/concurrent_cases"]  # pointers named
          phrases: ["below the end of the cord"]  # text that must appear in a finding
          reason: ["is not encoded"]    # text that must appear in an undetermined line's reason
      observations: [OBS-AXIAL-PAIN-ONLY]
      not_observations: []
"""
from __future__ import annotations

import datetime
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .api import exercised_rules, explain_case
from .case import parse_case
from .engine.limits import within_time_limit
from .errors import InputError

GOLDEN_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass
class Golden:
    name: str
    file: str
    case: dict
    payer: str = None
    as_of: datetime.date = None
    why: str = ""
    expect: dict = field(default_factory=dict)
    case_file: str = None  # where the case came from, when it is not inline


# The keys a golden case, its expect block and a line's expectation may have: anything else is a
# misspelling (`determinaton:`) that would silently test nothing, so it is an error.
CASE_KEYS = ("name", "case", "payer", "as_of", "why", "expect")
EXPECT_KEYS = ("overall", "lines", "observations", "not_observations")
LINE_KEYS = ("code", "line", "determination", "rules", "not_rules", "considerations", "not_considerations",
             "missing", "phrases", "reason")


@dataclass
class GoldenError:
    """A golden case (or a whole golden file) that cannot be run, with the reason."""
    file: str
    name: str  # the case's name, or "" for the whole file
    message: str


def _unknown_keys(mapping: dict, known: tuple, where: str) -> list:
    import difflib

    out = []
    for key in mapping:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else f" (known: {', '.join(known)})"
            out.append(f"{where}: unknown key {key!r}{hint}")
    return out


def _entry_problems(entry: dict) -> list:
    """What is wrong with one golden case's keys and their types, in words."""
    problems = _unknown_keys(entry, CASE_KEYS, "case")
    for key in ("name", "case", "expect"):
        if key not in entry:
            problems.append(f"a golden case needs {key}")
    expect = entry.get("expect")
    if "expect" in entry and not isinstance(expect, dict):
        problems.append("expect: must be a mapping")
    elif isinstance(expect, dict):
        problems += _unknown_keys(expect, EXPECT_KEYS, "expect")
        lines = expect.get("lines", [])
        if not isinstance(lines, list):
            problems.append("expect/lines: must be a list")
        else:
            for i, spec in enumerate(lines):
                if not isinstance(spec, dict):
                    problems.append(f"expect/lines/{i}: must be a mapping")
                    continue
                problems += _unknown_keys(spec, LINE_KEYS, f"expect/lines/{i}")
                if "code" not in spec and "line" not in spec:
                    problems.append(f"expect/lines/{i}: needs code or line")
    return problems


def load_golden(path: Path) -> list:
    """The golden cases in one file; InputError naming every case that cannot be run."""
    goldens, errors = read_golden(path)
    if errors:
        raise InputError([("", f"{e.name}: {e.message}" if e.name else e.message) for e in errors], str(path))
    return goldens


def read_golden(path: Path) -> tuple:
    """(golden cases, GoldenErrors) of one file. Each case stands alone: a misspelt key or a
    missing case file is an error of that case, and the file's other cases still run."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        return [], [GoldenError(str(path), "", f"not UTF-8 text: byte at offset {exc.start} (golden files are UTF-8)")]
    except OSError as exc:
        return [], [GoldenError(str(path), "", f"cannot read the file: {exc.strerror or exc}")]
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        return [], [GoldenError(str(path), "", f"not a valid golden file: {exc}")]
    entries = doc if isinstance(doc, list) else [doc]
    out, errors = [], []
    for i, entry in enumerate(entries):
        label = f"case {i + 1}" if isinstance(doc, list) else "the case"
        if not isinstance(entry, dict):
            errors.append(GoldenError(str(path), label, "a golden case is a mapping with name, case and expect"))
            continue
        name = str(entry.get("name") or label)
        problems = _entry_problems(entry)
        case, case_path = entry.get("case"), None
        if not problems and isinstance(case, str):
            case_path = (path.parent / case).resolve()
            try:
                case = json.loads(case_path.read_bytes().decode("utf-8"))
            except (OSError, ValueError) as exc:
                problems.append(f"cannot read case file {case}: {getattr(exc, 'strerror', None) or exc}")
        elif not problems and not isinstance(case, dict):
            problems.append("case: must be a case object or the path of a case file")
        as_of = entry.get("as_of")
        if not problems and as_of is not None and not isinstance(as_of, datetime.date):
            try:
                as_of = datetime.date.fromisoformat(str(as_of))
            except ValueError:
                problems.append(f"as_of: {as_of!r} is not an ISO date (YYYY-MM-DD)")
        if problems:
            errors.append(GoldenError(str(path), name, "; ".join(problems)))
            continue
        out.append(Golden(name, str(path), case, entry.get("payer"), as_of, entry.get("why", ""),
                          entry["expect"], str(case_path) if case_path else None))
    return out, errors


def golden_files(folders) -> list:
    """The golden files in files and folders, each once however often it is named
    (`test --rules D D/tests` names D/tests twice)."""
    files, seen = [], set()
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            found = [folder]
        elif folder.is_dir():
            found = sorted(p for p in folder.rglob("*") if p.suffix in GOLDEN_SUFFIXES and p.is_file()
                           and not _is_case_file(p))
        else:
            found = []
        for path in found:
            if path.resolve() not in seen:
                seen.add(path.resolve())
                files.append(path)
    return files


def _is_case_file(path: Path) -> bool:
    if path.suffix != ".json":
        return False
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, ValueError, RecursionError):  # not a readable case: left to load_golden to report
        return False
    return isinstance(doc, dict) and doc.get("schema") == "ionm-logic/case/v1"


def run_golden(kb, golden: Golden):
    """(result, [failure messages], ids of the rules the case exercised) of one golden case."""
    case = parse_case(json.dumps(golden.case), golden.file)
    result = explain_case(kb, case, payer=golden.payer, as_of=golden.as_of, source=golden.file).document
    exercised = exercised_rules(kb, case, payer=golden.payer, as_of=golden.as_of)
    return result, compare(result, golden.expect), exercised


def _line_for(result, spec):
    lines = result["lines"]
    if "line" in spec:
        index = spec["line"]
        return lines[index] if 0 <= index < len(lines) else None
    matches = [l for l in lines if l["code"] == str(spec.get("code"))]
    return matches[0] if matches else None


def compare(result: dict, expect: dict) -> list:
    failures = []
    if "overall" in expect and result["overall"]["determination"] != expect["overall"]:
        failures.append(f"overall: expected {expect['overall']}, got {result['overall']['determination']}")
    for spec in expect.get("lines", []):
        label = f"line {spec.get('line', spec.get('code'))}"
        line = _line_for(result, spec)
        if line is None:
            failures.append(f"{label}: no such line in the case")
            continue
        fired = [f["rule"] for f in line["findings"]]
        if "determination" in spec and line["determination"] != spec["determination"]:
            got = ", ".join(f"{f['rule']}={f['determination']}" for f in line["findings"]) or "none"
            failures.append(f"{label}: expected {spec['determination']}, got {line['determination']} (findings: {got})")
        _members(failures, label, "finding rule", fired, spec.get("rules", []), spec.get("not_rules", []))
        _members(failures, label, "consideration", [c["rule"] for c in line["considerations"]],
                 spec.get("considerations", []), spec.get("not_considerations", []))
        named = {fld["pointer"] for gap in line["missing_documentation"] for fld in gap["fields"]}
        for ptr in spec.get("missing", []):
            if ptr not in named:
                failures.append(f"{label}: expected missing documentation {ptr}, got {sorted(named)}")
        if "missing" in spec and not spec["missing"] and named:
            failures.append(f"{label}: expected no missing documentation, got {sorted(named)}")
        texts = " ".join(f["text"] for f in line["findings"])
        for phrase in spec.get("phrases", []):
            if phrase.lower() not in texts.lower():
                failures.append(f"{label}: expected the phrase {phrase!r} in a finding")
        for phrase in spec.get("reason", []):
            if phrase.lower() not in line.get("reason", "").lower():
                failures.append(f"{label}: expected the phrase {phrase!r} in the reason, got {line.get('reason')!r}")
    _members(failures, "case", "observation", [o["rule"] for o in result["observations"]],
             expect.get("observations", []), expect.get("not_observations", []))
    return failures


def _members(failures, label, kind, got, wanted, unwanted) -> None:
    for item in wanted:
        if item not in got:
            failures.append(f"{label}: expected {kind} {item}, got {got}")
    for item in unwanted:
        if item in got:
            failures.append(f"{label}: {kind} {item} is there but should not be")




@dataclass
class SuiteResult:
    passed: int = 0
    failed: list = field(default_factory=list)   # (golden, [messages])
    errors: list = field(default_factory=list)   # (file, message)
    exercised: set = field(default_factory=set)


def run_suite(kb, files: list) -> SuiteResult:
    """Run every golden case in `files`; a bad file or case is an error of its own, never a
    crash, and never stops the other cases."""
    out = SuiteResult()
    for path in files:
        goldens, errors = read_golden(Path(path))
        for error in errors:
            out.errors.append((error.file, f"{error.name}: {error.message}" if error.name else error.message))
        for golden in goldens:
            try:
                # Under the decision time limit: a case the rules never finish is an error of its own.
                _result, failures, exercised = within_time_limit(run_golden, kb, golden)
            except InputError as exc:
                out.errors.append((golden.file, f"{golden.name}: {exc.render()}"))
                continue
            out.exercised |= exercised
            if failures:
                out.failed.append((golden, failures))
            else:
                out.passed += 1
    return out


def uncovered_rules(kb, exercised: set, files_under=None) -> list:
    """Rules no golden case exercised, optionally only those defined in files under a prefix."""
    return [r for r in kb.rules if r.id not in exercised
            and (files_under is None or any(r.file.startswith(p) for p in files_under))]
