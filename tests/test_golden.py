"""Golden cases: every example's expected determinations, and the shipped packs' own cases."""
from pathlib import Path

import pytest

from ionm_logic.golden import golden_files, load_golden, run_golden
from ionm_logic.engine import shipped_rules_dir

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


@pytest.fixture(scope="module")
def exercised_by_case(kb):
    return [(g, run_golden(kb, g)[2]) for g in CASES]


def test_every_rule_fires_in_some_golden_case(kb, exercised_by_case):
    fired = set().union(*(e for _g, e in exercised_by_case))
    assert [r.id for r in kb.rules if r.id not in fired] == []


def test_every_pack_rule_is_absent_in_some_contrasting_golden_case(kb, exercised_by_case):
    """A pack rule that fired in every case would decide nothing; the shared pack logic's finding
    rules (rules/pack-logic.dl) are pack rules too."""
    pack_rules = [r.id for r in kb.rules if r.file.startswith("rules/packs/")
                  or (r.file == "rules/pack-logic.dl" and kb.decls[r.head.pred].role == "finding")]
    for rule in pack_rules:
        assert any(rule not in e for _g, e in exercised_by_case), rule


def test_shipped_golden_cases_alone_cover_every_rule(kb):
    from ionm_logic.golden import run_suite, uncovered_rules

    result = run_suite(kb, golden_files([shipped_rules_dir() / "tests"]))
    assert result.failed == [] and result.errors == [] and result.passed > 40
    assert [r.id for r in uncovered_rules(kb, result.exercised)] == []
