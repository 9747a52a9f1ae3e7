"""A decision the engine cannot finish ends with a clear error within its time limit.

The rule set is the symmetric and transitive fixture, which `check` rejects: here it is
compiled without the check, as a shape `check` does not know yet would be, to show the limit
really stops pyDatalog's loop (no in-process timer can, see engine/limits.py)."""
import time
from pathlib import Path

import pytest

from conftest import REFERENCE
from ionm_logic.api import explain, explain_case
from ionm_logic.case import parse_case
from ionm_logic.engine import RuleSet, load_rules, rule_files, shipped_rules_dir
from ionm_logic.engine.engine import Engine
from ionm_logic.engine.limits import DecisionTimeout, configured_seconds, within_time_limit
from ionm_logic.errors import InputError
from ionm_logic.lang.parse import parse_text

HANGS = Path(__file__).parent / "fixtures" / "rules" / "a-symmetric-and-transitive-predicate"


def unchecked(*folders) -> RuleSet:
    sources = rule_files(shipped_rules_dir(), "rules") + [s for f in folders for s in rule_files(f, None)]
    return RuleSet([parse_text(path.read_text(), name) for path, name in sources], [], "unchecked")


def test_a_decision_that_never_finishes_ends_with_a_clear_error_at_its_limit():
    kb = Engine(unchecked(HANGS))
    case = parse_case(REFERENCE.read_bytes())
    start = time.monotonic()
    with pytest.raises(DecisionTimeout) as caught:
        within_time_limit(explain, kb, case, seconds=2, source="case.json")
    took = time.monotonic() - start
    assert 2 <= took < 6
    message = caught.value.render()
    assert message.startswith("case.json: (document): the decision did not finish within 2 s")
    assert "run ionm-logic check" in message
    assert isinstance(caught.value, InputError)  # exit 2 in the CLI, an error record in a batch


def test_the_engine_answers_again_after_a_decision_was_stopped():
    # The stopped work ran in a child: this process's engine is untouched and still decides.
    kb = Engine(load_rules())
    case = parse_case(REFERENCE.read_bytes())
    before = explain(kb, case)
    assert within_time_limit(explain, kb, case, seconds=30) == before
    assert explain(kb, case) == before


def test_errors_inside_the_limited_work_come_back_as_themselves(kb):
    case = parse_case(REFERENCE.read_bytes())
    with pytest.raises(InputError) as caught:
        within_time_limit(explain_case, kb, case, payer="no-such-payer", seconds=30, source="c.json")
    assert "no-such-payer" in caught.value.render()


def test_the_limit_is_configured_by_environment(monkeypatch):
    monkeypatch.delenv("IONM_LOGIC_TIME_LIMIT", raising=False)
    assert configured_seconds() == 60
    monkeypatch.setenv("IONM_LOGIC_TIME_LIMIT", "2.5")
    assert configured_seconds() == 2.5
    monkeypatch.setenv("IONM_LOGIC_TIME_LIMIT", "off")
    assert configured_seconds() is None
    monkeypatch.setenv("IONM_LOGIC_TIME_LIMIT", "soon")
    with pytest.raises(InputError):
        configured_seconds()


def test_a_golden_case_that_never_finishes_is_an_error_of_its_own_and_the_next_case_runs(tmp_path, monkeypatch):
    import json

    from ionm_logic.golden import run_suite

    one_level = json.loads(REFERENCE.read_text())
    one_level["procedure"]["levels"] = ["L5"]  # one operated level: the fixture's closure is empty and ends
    golden = tmp_path / "two.yaml"
    golden.write_text(json.dumps([
        {"name": "two operated levels: the closure never ends", "case": str(REFERENCE), "expect": {}},
        {"name": "one operated level: decided", "case": one_level, "expect": {}},
    ]))
    monkeypatch.setenv("IONM_LOGIC_TIME_LIMIT", "2")
    result = run_suite(Engine(unchecked(HANGS)), [golden])
    assert result.passed == 1
    assert len(result.errors) == 1 and "two operated levels" in result.errors[0][1]
    assert "did not finish within 2 s" in result.errors[0][1]


def test_an_internal_error_inside_the_limited_work_keeps_its_type(kb):
    def fails():
        raise TypeError("'>' not supported between instances of 'str' and 'int'")

    with pytest.raises(TypeError, match="not supported"):
        within_time_limit(fails, seconds=30)
