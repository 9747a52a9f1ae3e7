"""Shared fixtures: one knowledge base per test session, case builders, proof walkers."""
import copy
import json
import subprocess
from pathlib import Path

import pytest

from ionm_logic.api import explain, knowledge_base
from ionm_logic.case import parse_case

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
REFERENCE = ROOT / "examples" / "alif-plif-l5-s1.json"


@pytest.fixture(scope="session")
def kb():
    return knowledge_base()


def reference_case() -> dict:
    return json.loads(REFERENCE.read_text())


def case_with(**changes) -> dict:
    """The reference case with dotted-path changes, e.g. case_with(**{"procedure.levels": ["T10"]})."""
    doc = copy.deepcopy(reference_case())
    for path, value in changes.items():
        target = doc
        parts = path.split(".")
        for part in parts[:-1]:
            target = target.setdefault(part, {})
        if value is DELETE:
            target.pop(parts[-1], None)
        else:
            target[parts[-1]] = value
    return doc


DELETE = object()


def decide(kb, doc: dict, **options) -> dict:
    return explain(kb, parse_case(json.dumps(doc)), **options)


def heads(result: dict) -> list:
    return [line["determination"] for line in result["lines"]]


def by_code(result: dict) -> dict:
    return {line["code"]: line for line in result["lines"]}


def rules_of(line: dict) -> set:
    return {f["rule"] for f in line["findings"]}


def walk(node):
    yield node
    for child in node.get("children") or []:
        yield from walk(child)


def all_proofs(result: dict):
    for line in result["lines"]:
        for item in line["findings"] + line["considerations"]:
            yield item
    yield from result["observations"]


def resolve_pointer(doc, pointer: str):
    """The value a JSON pointer names in doc; KeyError/IndexError when it names nothing."""
    target = doc
    if pointer == "":
        return target
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        target = target[int(part)] if isinstance(target, list) else target[part]
    return target


def child_pids(pid: int) -> list:
    """The processes `pid` started that are still there (zombies too)."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ")[-1][0] != "Z"
    except FileNotFoundError:
        return False
