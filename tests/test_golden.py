"""Golden cases: every example's expected determinations, and the shipped packs' own cases."""
from pathlib import Path

import pytest

from ionm_logic.golden import golden_files, load_golden, run_golden
from ionm_logic.kb import shipped_rules_dir

ROOT = Path(__file__).resolve().parent.parent
FILES = golden_files([ROOT / "examples" / "expected", shipped_rules_dir() / "tests"])
CASES = [g for path in FILES for g in load_golden(path)]


def test_every_example_case_has_expected_determinations():
    examples = {str(p.resolve()) for p in (ROOT / "examples").glob("*.json")}
    referenced = {g.case_file for g in CASES if g.case_file}
    assert len(examples) >= 3
    assert examples - referenced == set()


@pytest.mark.parametrize("golden", CASES, ids=[g.name for g in CASES])
def test_golden_case(kb, golden):
    _result, failures, _exercised = run_golden(kb, golden)
    assert failures == [], golden.why
