"""The rule language: parsing, and every static check, each reported at file:line (bad rule
files of their own are under tests/fixtures/bad-rules/, run by test_bad_rule_files.py)."""
import pytest

from ionm_logic.lang.checks import check_files
from ionm_logic.lang.objects import Const, RuleError, Var
from ionm_logic.lang.parse import parse_query, parse_text

DECLS = """
#pred p(A) :: '@(A) is p'.
#pred q(A, B) :: '@(A) relates to @(B)'.
#pred r(A) :: '@(A) is r'.
#citation src {title: "T", year: 2020, source: "S", evidence_level: "E"}.
"""


def problems_of(text: str, name: str = "rules/test.dl"):
    return check_files([parse_text(DECLS + text, name)])


def errors(text: str):
    return [p for p in problems_of(text) if p.level == "error"]


def line_of(text: str, needle: str) -> int:
    full = DECLS + text
    return next(i for i, line in enumerate(full.splitlines(), 1) if needle in line)


def test_parses_facts_rules_negation_comparisons_and_annotations():
    rf = parse_text(DECLS + """
q("L1", 20).
@rule R-ONE
@cites src
@text '@(A) is p because it relates to @(B)'
p(A) :- q(A, B), B > 3, not r(A).
""", "rules/x.dl")
    assert [f.atom.pred for f in rf.facts] == ["q"]
    rule = rf.rules[0]
    assert (rule.id, rule.citations, rule.template) == ("R-ONE", ("src",), "@(A) is p because it relates to @(B)")
    assert rule.head.args == (Var("A"),)
    assert [type(i).__name__ for i in rule.body] == ["Literal", "Comparison", "Literal"]
    assert rule.body[2].negated and rule.body[1].op == ">"
    assert rf.facts[0].atom.args == (Const("L1"), Const(20))
    assert rule.line == line_of("\n".join(["", "q(\"L1\", 20).", "@rule R-ONE", "@cites src",
                                           "@text '@(A) is p because it relates to @(B)'", "p(A) :- q"]), "p(A) :- q")


def test_quoted_strings_keep_quotes_and_code_verbatim():
    rf = parse_text("#pred p(A) :: 'x @(A)'.\np(\"a'); __import__(\\\"os\\\")\").\n", "f.dl")
    assert rf.facts[0].atom.args[0].value == "a'); __import__(\"os\")"


def test_unsafe_negated_variable_is_an_error():
    errs = errors("@rule U2\n@cites src\n@text 'x'\np(A) :- r(A), not q(A, B).\n")
    assert any("variable B in 'not q" in e.message for e in errs)


def test_anonymous_variable_in_negation_is_unsafe():
    errs = errors("@rule U3\n@cites src\n@text 'x'\np(A) :- r(A), not q(A, _).\n")
    assert any("variable _ in 'not q" in e.message for e in errs)


def test_unbound_comparison_variable_is_an_error():
    errs = errors("@rule U4\n@cites src\n@text 'x'\np(A) :- r(A), B > 2.\n")
    assert any("in a comparison" in e.message for e in errs)


def test_undeclared_predicate_is_an_error_at_its_line():
    text = "@rule U5\n@cites src\n@text 'x'\np(A) :- r(A), s(A).\n"
    errs = errors(text)
    assert any("s/1 is not declared" in e.message and e.line == line_of(text, "s(A)") for e in errs)


def test_arity_mismatch_is_an_error():
    errs = errors("q(a).\n")
    assert any("q takes 2 argument(s)" in e.message for e in errs)


def test_positive_recursion_is_allowed():
    text = ("@rule T1\n@cites src\n@text 'x'\nq(A, B) :- q(A, C), q(C, B).\n")
    assert not errors(text)


def test_duplicate_rule_ids_missing_annotations_and_unknown_citations():
    text = ("@rule D1\n@cites src\n@text 'x'\np(A) :- r(A).\n"
            "@rule D1\n@cites src\n@text 'x'\np(A) :- r(A).\n"
            "p(A) :- r(A).\n"
            "@rule D2\n@cites nowhere\n@text 'x'\np(A) :- r(A).\n")
    messages = [e.message for e in errors(text)]
    assert any("rule id D1 is already the id of the rule at" in m for m in messages)
    assert any("has no @rule id" in m for m in messages)
    assert any("has no @text" in m for m in messages)
    assert any("citation key nowhere is not defined" in m for m in messages)


def test_template_slot_must_be_a_rule_variable():
    errs = errors("@rule S1\n@cites src\n@text '@(Z) is odd'\np(A) :- r(A).\n")
    assert any("@(Z)" in e.message for e in errs)


def test_rules_may_not_define_case_predicates():
    text = "#case c(A) :: '@(A)'.\n@rule K1\n@cites src\n@text 'x'\nc(A) :- r(A).\nc(a).\n"
    messages = [e.message for e in errors(text)]
    assert any("a #case predicate" in m and "K1" in m for m in messages)
    assert any("its facts come from case files only" in m for m in messages)


def test_query_parses_with_the_rule_grammar_only():
    atom = parse_query('level_rank(Level, "L5")')
    assert atom.pred == "level_rank" and atom.args == (Var("Level"), Const("L5"))
    with pytest.raises(RuleError):
        parse_query("__import__('os').system('true')")


def test_shipped_rules_are_clean(kb):
    assert [p for p in kb.problems if p.level == "error"] == []


def test_every_shipped_rule_is_safe(kb):
    for rule in kb.rules:
        bound = rule.positive_variables()
        assert set(rule.head.variables()) <= bound, rule.id


PACK = """
#pred policy_pack(Pack, Title) :: '@(Pack) is @(Title)'.
#pred policy_version(Pack, Version, Starts) :: '@(Pack) @(Version) from @(Starts)'.
#pred policy_version_ends(Pack, Version, Ends) :: '@(Pack) @(Version) until @(Ends)'.
#pred determination_precedence(Pack, Determination, Rank) :: '@(Pack) ranks @(Determination) @(Rank)'.
#finding f(Case, Line, Determination) :: '@(Line) is @(Determination)'.
policy_pack("p", "P").
"""
RANKS = "".join(f'determination_precedence("p", {d}, {i}).\n' for i, d in enumerate(
    ["not_separately_reimbursable", "requirements_not_met", "documentation_insufficient",
     "not_medically_necessary", "insufficient_evidence", "medically_necessary"], 1))


def test_precedence_must_order_every_determination():
    messages = [e.message for e in errors(PACK + 'determination_precedence("p", medically_necessary, 1).\n')]
    assert any("the precedence does not order not_separately_reimbursable" in m for m in messages)


def test_findings_must_conclude_a_determination_of_the_vocabulary():
    text = PACK + RANKS + "@rule F1\n@cites src\n@text 'x'\nf(C, L, probably_fine) :- q(C, L).\n"
    assert any("must be one of" in e.message for e in errors(text))


def test_overlapping_version_windows_are_errors():
    text = PACK + RANKS + ('policy_version("p", "a", "2020-01-01").\npolicy_version("p", "b", "2021-01-01").\n'
                           'policy_version_ends("p", "a", "2021-06-30").\n')
    assert any("overlapping version b" in e.message for e in errors(text))
    same_day = PACK + RANKS + 'policy_version("p", "a", "2020-01-01").\npolicy_version("p", "b", "2020-01-01").\n'
    assert any("start on the same day" in e.message for e in errors(same_day))


def test_defined_but_unused_predicates_are_warnings():
    warnings = [p for p in problems_of("r(a).\n") if p.level == "warning"]
    assert any("r is defined but no rule uses it" in w.message for w in warnings)
