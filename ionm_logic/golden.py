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


def load_golden(path: Path) -> list:
    """The golden cases in one file."""
    text = path.read_text(encoding="utf-8")
    try:
        doc = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InputError([("", f"not a valid golden file: {exc}")], str(path)) from None
    entries = doc if isinstance(doc, list) else [doc]
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "name" not in entry or "case" not in entry or "expect" not in entry:
            raise InputError([(f"/{i}" if isinstance(doc, list) else "",
                               "a golden case needs name, case and expect")], str(path))
        case = entry["case"]
        case_path = None
        if isinstance(case, str):
            case_path = (path.parent / case).resolve()
            try:
                case = json.loads(case_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise InputError([("/case", f"cannot read case file {case}: {exc}")], str(path)) from None
        as_of = entry.get("as_of")
        if isinstance(as_of, str):
            as_of = datetime.date.fromisoformat(as_of)
        out.append(Golden(entry["name"], str(path), case, entry.get("payer"), as_of, entry.get("why", ""),
                          entry["expect"], str(case_path) if case_path else None))
    return out


def golden_files(folders) -> list:
    files = []
    for folder in folders:
        folder = Path(folder)
        if folder.is_file():
            files.append(folder)
        elif folder.is_dir():
            files += sorted(p for p in folder.rglob("*") if p.suffix in GOLDEN_SUFFIXES and p.is_file()
                            and not _is_case_file(p))
    return files


def _is_case_file(path: Path) -> bool:
    if path.suffix != ".json":
        return False
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
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
    """Run every golden case in `files`; a bad file or case is an error, never a crash."""
    out = SuiteResult()
    for path in files:
        try:
            goldens = load_golden(Path(path))
        except InputError as exc:
            out.errors.append((str(path), exc.render()))
            continue
        for golden in goldens:
            try:
                _result, failures, exercised = run_golden(kb, golden)
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
