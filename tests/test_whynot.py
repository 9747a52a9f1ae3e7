"""Why-not (explain.why_not): for a line and a determination it did not get, each rule's nearest
miss — the first body literal that fails, and what would satisfy it."""
import json

import pytest

from conftest import case_with
from ionm_logic.case import parse_case, pose
from ionm_logic.errors import InputError
from ionm_logic.explain import check_target, why_not


def report(kb, doc, target):
    case = parse_case(json.dumps(doc))
    index, determination = check_target(case, target)
    return why_not(kb, pose(case, kb), index, determination)


def entry(rep, rule_id):
    return next(r for r in rep["rules"] if r["rule"] == rule_id)


def test_ssep_below_the_cord_misses_necessity_at_the_cord_at_risk_literal(kb):
    # domain.md: at L5-S1 with the cord ending at L1, SSEP monitors no structure at risk, so
    # the commercial pack's cord-at-risk rule fails exactly at structure_at_risk(case, spinal_cord);
    # an operated level holding cord (RISK-CORD-IN-FIELD) is what would have satisfied it.
    rep = report(kb, case_with(), "95938=medically_necessary")
    assert rep["schema"] == "ionm-logic/why-not/v1" and rep["concluded"] is False
    miss = entry(rep, "CR-P2-CORD-AT-RISK")
    assert miss["holds"] is False and miss["literal"] == "structure_at_risk(case, spinal_cord)"
    assert "RISK-CORD-IN-FIELD" in [s.get("rule") for s in miss["would_satisfy"]]
    assert set(rep["citations"]) == {c for r in rep["rules"] for c in r["citations"]}


def test_the_same_rule_holds_when_the_operation_is_where_the_cord_is(kb):
    # T10-T11 lies above the default cord end (L1): the cord is at risk and SSEP is necessary.
    rep = report(kb, case_with(**{"procedure.levels": ["T10", "T11"]}), "95938=medically_necessary")
    assert rep["concluded"] is True
    held = entry(rep, "CR-P2-CORD-AT-RISK")
    assert held["holds"] is True and held["proof"]["rule"] == "CR-P2-CORD-AT-RISK"
    assert "fails_at" not in held


def test_a_miss_on_an_undocumented_case_field_says_what_the_case_file_would_record(kb):
    # The reference case leaves concurrent_cases undocumented on purpose (design.md): the
    # concurrent-cases requirement on remote time (95941) fails at that case literal, and what
    # would satisfy it is the case file recording the count, not a rule or a fact.
    rep = report(kb, case_with(), "95941=requirements_not_met")
    miss = entry(rep, "PACK-CONCURRENT-CASES")  # shared pack logic (rules/pack-logic.dl)
    assert miss["literal"] == "professional_concurrent_cases(case, Count)"
    assert [s["kind"] for s in miss["would_satisfy"]] == ["case"]
    assert miss["would_satisfy"][0]["text"].startswith("the case file recorded that ")


@pytest.mark.parametrize("target, pointer", [("99999=medically_necessary", "/services"),
                                             ("95938=probably", ""), ("95938", "")])
def test_targets_that_name_no_line_or_no_determination_are_input_errors(target, pointer):
    with pytest.raises(InputError) as exc:
        check_target(parse_case(json.dumps(case_with())), target)
    assert exc.value.problems[0][0] == pointer
