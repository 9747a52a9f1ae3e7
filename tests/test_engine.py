"""The Engine: asserting and retracting case facts, fact deltas, and ownership by one thread."""
import itertools
import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import reference_case
from ionm_logic import api
from ionm_logic.case import parse_case, pose
from ionm_logic.engine import load_rules
from ionm_logic.engine.engine import Engine, EngineThreadError


def on_thread(fn):
    """fn() run on a new thread: ('ok', value) or ('raised', exception)."""
    out = []

    def run():
        try:
            out.append(("ok", fn()))
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            out.append(("raised", exc))

    thread = threading.Thread(target=run, name="intruder")
    thread.start()
    thread.join()
    return out[0]


def test_case_facts_are_asked_inside_the_block_and_gone_after_it(kb):
    with kb.case_facts([("operated_level", ("case", "L5")), ("operated_level", ("case", "S1"))]):
        assert kb.values("most_cranial_operated_level", "case", None) == [("case", "L5")]
    assert kb.values("operated_level", "case", None) == []


def test_a_fact_delta_applies_within_its_block_and_is_undone_after(kb):
    with kb.case_facts([("operated_level", ("case", "L5"))]):
        with kb.fact_delta(add=[("operated_level", ("case", "T10"))], remove=[("operated_level", ("case", "L5"))]):
            assert kb.values("operated_level", "case", None) == [("case", "T10")]
        assert kb.values("operated_level", "case", None) == [("case", "L5")]


def test_engine_work_from_another_thread_raises_a_named_error_and_never_answers(kb):
    # Every kind of engine work: asking, a rule's table, asserting case facts.
    rule = kb.rules[0]
    attempts = {
        "ask": lambda: kb.ask("level_rank", (None, 24)),
        "values": lambda: kb.values("level_rank", "L5", None),
        "rule_table": lambda: kb.rule_table(rule),
        "case_facts": lambda: kb.case_facts([("operated_level", ("case", "L5"))]).__enter__(),
        "decide": lambda: api.explain(kb, parse_case(json.dumps(reference_case()))),
    }
    for what, attempt in attempts.items():
        outcome, value = on_thread(attempt)
        assert outcome == "raised", what
        assert isinstance(value, EngineThreadError), (what, value)
        assert "belongs to thread" in str(value) and "intruder" in str(value)
    # The owner is undisturbed.
    assert kb.values("level_rank", "L5", None) == [("L5", 24)]


def test_knowledge_base_gives_each_thread_its_own_engine_over_one_rule_set(kb):
    outcome, theirs = on_thread(lambda: api.knowledge_base())
    assert outcome == "ok"
    assert theirs is not kb and theirs.ruleset is kb.ruleset
    assert api.knowledge_base() is kb  # the same thread gets the same engine back


def test_threads_deciding_at_once_each_get_the_single_threaded_answer(kb):
    docs = []
    for payer in ("commercial-reference", "cms-lcd-l34623", "anthem-cg-surg-104"):
        doc = reference_case()
        doc["payer"] = payer
        docs.append(doc)
    expected = [json.dumps(api.explain(kb, parse_case(json.dumps(d)))) for d in docs]

    def decide_all(_n):
        mine = api.knowledge_base()
        return [json.dumps(api.explain(mine, parse_case(json.dumps(d)))) for d in docs * 2]

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(decide_all, range(8)))
    assert all(r == expected * 2 for r in results)


def test_a_second_engine_on_the_same_thread_takes_the_thread_back_when_used(kb):
    other = Engine(kb.ruleset)  # compiles into this thread's pyDatalog, displacing kb's clauses
    assert other.values("level_rank", "L5", None) == [("L5", 24)]
    # kb notices and recompiles itself before answering.
    with kb.case_facts([("operated_level", ("case", "L5"))]):
        assert kb.values("most_cranial_operated_level", "case", None) == [("case", "L5")]


def test_load_reports_bad_rule_folders_as_rules_errors(tmp_path):
    from ionm_logic.engine import RulesError

    with pytest.raises(RulesError):
        Engine.load([tmp_path / "no-such-folder"])


RECURSIVE = Path(__file__).parent / "fixtures" / "rules" / "a-recursive-predicate-over-case-facts"
PAIRS_FOR = ("l1-l2-decompression-remote-undocumented.json", "l2-l3-decompression-claudication-remote.json")
EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.json"))


def top_down(kb, rule, key) -> list:
    """The rule's witnesses for case `key` by the engine's own top-down evaluation of the rules
    as written (rule_table asks the rule's witness predicate with every variable free)."""
    position = rule.variables().index(rule.head.args[0].name)
    return [row for row in kb.rule_table(rule) if row[position] == key]


@pytest.mark.parametrize("folders", [(), (RECURSIVE,)], ids=["shipped rules", "with a recursive component"])
def test_stratum_by_stratum_evaluation_gives_every_rule_the_witnesses_of_top_down_evaluation(folders):
    # case_tables evaluates a case bottom-up, stratum by stratum, each reading the strata below
    # as frozen facts; variant_tables re-asks only what a change reaches. Both must give every
    # rule exactly the witnesses pyDatalog's top-down evaluation of the rules as written gives,
    # for the case itself and for each single documented value of an undocumented field.
    kb = Engine(load_rules(folders))
    for path in EXAMPLES:
        posed = pose(parse_case(path.read_bytes()), kb)
        pack, key = posed.policy.pack, posed.key
        rules = kb.pack_rules(pack)
        with kb.case_facts(list(posed.pointers)):
            tables = kb.case_tables(pack, key)
            for rule in rules:
                assert tables[kb.index(rule)] == top_down(kb, rule, key), (path.name, rule.id)
            fields = posed.undocumented([])
            # Each single value, then pairs: a variant may reuse the witnesses an earlier
            # variant of the case computed from the same inputs.
            variants = [[(field, value)] for field, values in fields for value in values]
            if path.name in PAIRS_FOR:  # pairs cost a top-down evaluation each: two examples
                variants += [[(f1, v1[0]), (f2, v2[-1])] for (f1, v1), (f2, v2) in itertools.combinations(fields, 2)]
            for assignments in variants:
                add, remove = posed.delta(assignments)
                touched = kb.touched_rules(add | remove)
                with kb.fact_delta(add, remove):
                    variant = kb.variant_tables(rules, touched, pack, key)
                    for rule in rules:
                        assert variant[kb.index(rule)] == top_down(kb, rule, key), (path.name, assignments, rule.id)
            # The variants left the case's own answers as they were.
            assert kb.case_tables(pack, key) == tables
            for rule in rules:
                assert tables[kb.index(rule)] == top_down(kb, rule, key)


def test_a_recursive_component_shares_one_stratum_and_reads_itself_live():
    kb = Engine(load_rules([RECURSIVE]))
    stages = kb._stages["commercial-reference"]
    assert stages.component["level_reached"] == {"level_reached", "level_reached_onward"}
    assert stages.level_of["level_reached"] == stages.level_of["level_reached_onward"]
    assert stages.level_of["level_at_or_above"] > stages.level_of["level_reached"]
    assert {"level_reached", "level_reached_onward", "level_at_or_above"} <= stages.live_preds


def test_decisions_are_the_same_whatever_the_engine_remembers_across_cases(monkeypatch):
    # The engine keeps rule witnesses by their inputs across cases, and compiles unions of part
    # of a stratum, both bounded. With both bounds tiny (the memo cleared every few rules, the
    # whole stratum asked instead of a part) and with the cases in the other order, every
    # decision is the same as with room to spare.
    from ionm_logic.engine import engine as engine_module

    def decide_all(paths):
        kb = Engine(load_rules())
        return {path.name: api.explain(kb, parse_case(path.read_bytes())) for path in paths}

    roomy = decide_all(EXAMPLES)
    monkeypatch.setattr(engine_module, "RULE_MEMO_ENTRIES", 3)
    monkeypatch.setattr(engine_module, "SUBSET_UNIONS", 1)
    assert decide_all(reversed(EXAMPLES)) == roomy


def test_witnesses_remembered_across_many_cases_line_by_line_are_those_of_top_down_evaluation(tmp_path):
    # One engine decides 160 generated cases in a row, as a batch worker does: its rule memo
    # answers many rules from earlier cases' inputs, whole or line by line (a rule whose
    # witnesses are split by their line variable is answered from the lines' own inputs, in
    # whatever combination they come). For each of the last 40 cases, and for each single
    # documented value of 8 of them, every rule's table must be the top-down evaluation's.
    import subprocess
    import sys

    claims = tmp_path / "claims.jsonl"
    subprocess.run([sys.executable, str(Path(__file__).resolve().parent.parent / "benchmarks" / "generate_cases.py"),
                    "160", str(claims), "--seed", "11"], check=True)
    kb = Engine(load_rules())
    cases = [parse_case(line) for line in claims.read_bytes().splitlines()]
    for case in cases[:120]:
        api.explain(kb, case)
    line_rules = set().union(*(stages.line_var for stages in kb._stages.values()))
    assert line_rules  # the shipped rules have rules remembered line by line
    remembered, hits = 0, kb.line_hits
    for number, case in enumerate(cases[120:]):
        posed = pose(case, kb)
        pack, key = posed.policy.pack, posed.key
        rules = kb.pack_rules(pack)
        with kb.case_facts(list(posed.pointers)):
            tables = kb.case_tables(pack, key)
            for rule in rules:
                assert tables[kb.index(rule)] == top_down(kb, rule, key), (number, rule.id)
            remembered += sum(1 for rule in rules if kb.index(rule) in line_rules and tables[kb.index(rule)])
            if number % 5:
                continue
            for field, values in posed.undocumented([]):
                for value in values:
                    add, remove = posed.delta([(field, value)])
                    with kb.fact_delta(add, remove):
                        variant = kb.variant_tables(rules, kb.touched_rules(add | remove), pack, key)
                        for rule in rules:
                            assert variant[kb.index(rule)] == top_down(kb, rule, key), (number, field, value, rule.id)
    # Not vacuous: line-by-line rules had witnesses, and the memo answered rules line by line.
    assert remembered and kb.line_hits > hits


def test_a_case_with_its_lines_in_another_order_is_answered_from_the_first_case_line_by_line(monkeypatch):
    # Datalog tells one value from another only by the constants its rules name and by order
    # comparisons: a rule with no order comparison between variables has, for line
    # /services/5, the witnesses it has for /services/0 with the line renamed, when that line
    # meets the same inputs. So once a case is decided, the same case with its service lines
    # in the other order (each line's pointer another) asks no such rule again, and each
    # rule's table is still the top-down evaluation's.
    kb = Engine(load_rules())
    case = parse_case((EXAMPLES[0].parent / "alif-plif-l5-s1.json").read_bytes())
    reordered = case.model_copy(update={"services": list(reversed(case.services))})
    api.explain(kb, case)
    asked = []
    ask_union = kb._ask_union
    monkeypatch.setattr(kb, "_ask_union", lambda name, rules, *rest: asked.extend(rules) or ask_union(name, rules, *rest))
    posed = pose(reordered, kb)
    pack, key = posed.policy.pack, posed.key
    stages = kb._stages[pack]
    with kb.case_facts(list(posed.pointers)):
        tables = kb.case_tables(pack, key)
    generic_with_witnesses = [rule for rule in kb.pack_rules(pack) if kb.index(rule) in stages.generic
                              and tables[kb.index(rule)]]
    assert generic_with_witnesses  # not vacuous: line rules with witnesses, answered by renaming
    assert not [rule.id for rule in asked if kb.index(rule) in stages.generic]
    with kb.case_facts(list(posed.pointers)):
        for rule in kb.pack_rules(pack):
            assert kb.case_tables(pack, key)[kb.index(rule)] == top_down(kb, rule, key), rule.id


def test_a_line_value_is_renamed_only_where_nothing_in_the_rule_can_tell_it_apart():
    # Renaming a line value keeps witnesses only where nothing can tell the value apart: a rule
    # comparing its line variable by order is never generic; a rule comparing other variables
    # by order (units against a day's most) renames a line value only when no input holds that
    # value where those variables sit; a line value a rule or fact names is never renamed.
    kb = Engine(load_rules())
    stages = kb._stages["commercial-reference"]
    by_id = {rule.id: kb.index(rule) for rule in kb.pack_rules("commercial-reference")}
    units = by_id["PACK-UNITS-EXCEED-A-DAY"]
    assert units in stages.line_var and units in stages.generic and any(stages.ordered[units])
    assert by_id["SCOPE-ENCODED-CLASS"] in stages.generic and by_id["SCOPE-ENCODED-CLASS"] not in stages.ordered
    assert "spinal_cord" in stages.constants and "/services/0" not in stages.constants

    def renamed(billed_units):
        line = "/services/0"
        given = {"applies_policy": {("case", "commercial-reference", "2024")}, "time_line": {("case", line)},
                 "billed_line": {("case", line, "95940")}, "billed_units": {("case", line, billed_units)}}
        parts = [units] + [frozenset(given[pred]) for _a, pred, _c, _d, _p in stages.inputs[units]]
        [(value, _key, was_renamed)] = kb._line_keys(stages, units, parts)
        return value, was_renamed

    assert renamed(9) == ("/services/0", True)
    # The same value where Units is compared: renaming it would change what Units > Most says.
    assert renamed("/services/0") == ("/services/0", False)


def test_a_rule_input_is_held_to_the_values_its_rule_file_facts_allow():
    # has_diagnosis_in(Case, Prefix) beside axial_pain_diagnosis(Prefix): only the case's
    # axial-pain prefixes can join a witness of OBS-AXIAL-PAIN-ONLY, so they alone are its key,
    # the values taken from the rule-file facts themselves.
    kb = Engine(load_rules())
    stages = kb._stages["commercial-reference"]
    n = kb.index(kb.rules_by_id["OBS-AXIAL-PAIN-ONLY"])
    prefixes = frozenset(f.atom.args[0].value for f in kb.facts if f.atom.pred == "axial_pain_diagnosis")
    assert prefixes
    held = dict(zip([pred for _a, pred, _c, _d, _p in stages.inputs[n]], stages.held[n]))
    assert held["has_diagnosis_in"] == ((1, prefixes),)
    assert held["clinical_sign"] == ()  # negated, beside no rule-file fact: held to nothing more


def test_a_rule_whose_case_fact_input_matches_nothing_is_answered_empty_as_top_down_evaluation_answers(kb, monkeypatch):
    # Inside a case, rule_table answers a rule with no ask when a decisive input over case
    # facts alone matches none of them (a rule gated to another pack, mostly). Every rule's
    # table, under every pack, must be the one pyDatalog gives when asked.
    case = parse_case(json.dumps(reference_case()).encode())
    skipped = 0
    for pack in ("commercial-reference", "cms-lcd-l34623", "anthem-cg-surg-104", "bcbsa-7.01.58"):
        posed = pose(case, kb, payer=pack)
        rules = [r for r in kb.rules if r.head.pred in kb.case_dependent]
        with kb.case_facts(list(posed.pointers)):
            shortcut = {r.id: kb.rule_table(r) for r in rules}
            skipped += sum(kb._no_witness(r) for r in rules)
            with monkeypatch.context() as m:
                m.setattr(Engine, "_no_witness", lambda self, rule: False)
                asked = {r.id: kb.rule_table(r) for r in rules}
        assert shortcut == asked
    assert skipped  # the shortcut was taken
