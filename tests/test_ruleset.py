"""The RuleSet's dependency analysis, on the shipped rules, without pyDatalog: which rules a
pack can use, what a predicate depends on, which rules a changed case fact touches."""
import json
import pickle
import subprocess
import sys

import pytest

from conftest import ROOT
from ionm_logic.engine import load_rules
from ionm_logic.lang.contract import BASIS_PREDICATES


@pytest.fixture(scope="module")
def rules():
    return load_rules()


def test_the_analysis_runs_without_importing_pydatalog():
    # A fresh interpreter: the test session itself has pyDatalog loaded by other tests.
    script = """
import json, sys
from ionm_logic.engine import load_rules
rules = load_rules()
out = {
    "pack_rules": len(rules.pack_rules("cms-lcd-l34623")),
    "depends": sorted(rules.depends_on("operation_below_cord")),
    "touched": len(rules.touched_rules({("professional_concurrent_cases", ("case", 2))})),
    "pydatalog": "pyDatalog" in sys.modules,
}
print(json.dumps(out))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
    out = json.loads(proc.stdout)
    assert out["pydatalog"] is False
    assert out["pack_rules"] > 0 and out["touched"] > 0
    assert "operated_level" in out["depends"]


def test_a_rule_set_pickles_and_keeps_its_analysis(rules):
    copy = pickle.loads(pickle.dumps(rules))
    for pack in rules.packs:
        assert [r.id for r in copy.pack_rules(pack)] == [r.id for r in rules.pack_rules(pack)]
    assert copy.depends_on("operation_below_cord") == rules.depends_on("operation_below_cord")


def test_loading_writes_nothing_onto_the_parsed_rules(rules):
    assert all("index" not in vars(rule) for rule in rules.rules)
    assert [rules.index(r) for r in rules.rules] == list(range(len(rules.rules)))


def test_report_rules_of_a_pack_leave_out_every_rule_gated_to_another_pack(rules):
    for pack in rules.packs:
        gates = {rules.gate(r) for r in rules.report_rules(pack)}
        assert gates <= {None, pack}
        assert any(g == pack for g in gates), pack


def test_pack_rules_reach_the_report_basis_and_only_case_dependent_heads(rules):
    for pack in rules.packs:
        chosen = rules.pack_rules(pack)
        heads = {r.head.pred for r in chosen}
        assert set(BASIS_PREDICATES) <= heads
        assert heads <= rules.case_dependent
        assert all(rules.gate(r) in (None, pack) for r in chosen)
        # Every body predicate a chosen rule uses that is derived from the case is chosen too.
        for rule in chosen:
            for item in rule.body:
                pred = getattr(getattr(item, "atom", None), "pred", None)
                if pred in rules.case_dependent and rules.decls[pred].role != "case":
                    assert pred in heads, (pack, rule.id, pred)


def test_depends_on_follows_rule_bodies_to_facts_and_case_predicates(rules):
    below = rules.depends_on("operation_below_cord")
    assert {"operation_below_cord", "most_cranial_operated_level", "operated_level", "level_rank"} <= below
    # Anatomy does not depend on who interpreted the monitoring.
    assert "monitoring_setting" not in below
    # A table of facts depends on nothing but itself.
    assert rules.depends_on("level_rank") == {"level_rank"}


def test_a_changed_fact_touches_only_rules_it_matches_and_their_users(rules):
    fact = ("professional_concurrent_cases", ("case", 2))
    touched = rules.touched_rules({fact})
    direct = {rules.index(r) for r in rules.rules
              if any(getattr(i, "atom", None) is not None and i.atom.pred == fact[0] for i in r.body)}
    assert direct and direct <= touched
    # Every touched rule uses the fact's predicate or the head of another touched rule.
    heads = {rules.rules[n].head.pred for n in touched} | {fact[0]}
    for n in touched:
        assert any(getattr(i, "atom", None) is not None and i.atom.pred in heads for i in rules.rules[n].body)
    # Anatomy rules are untouched by the count of concurrent cases.
    assert not any(rules.rules[n].head.pred in ("last_cord_level", "operation_below_cord") for n in touched)


def test_constants_in_body_literals_decide_whether_a_fact_touches_a_rule(rules):
    # Rules that ask for clinical_sign(Case, myelopathy, true) are not touched by a "false";
    # a rule reading clinical_sign(Case, Sign, Value) is touched by both.
    true = rules.touched_rules({("clinical_sign", ("case", "myelopathy", "true"))})
    false = rules.touched_rules({("clinical_sign", ("case", "myelopathy", "false"))})
    assert false < true
    wants_true = {rules.index(r) for r in rules.rules if any(
        getattr(i, "atom", None) is not None and i.atom.pred == "clinical_sign"
        and [getattr(a, "value", None) for a in i.atom.args[1:]] == ["myelopathy", "true"] for i in r.body)}
    assert wants_true and wants_true <= true and not wants_true & false
    assert rules.touched_rules(set()) == frozenset()


def test_the_parsed_rule_cache_key_changes_with_any_module_of_the_rule_language(tmp_path, monkeypatch):
    # Rule objects pickled by one version of lang/ must never be read by another: the key
    # hashes every lang/ module, whatever its name (files moved in or out count too).
    import shutil

    from ionm_logic.engine import ruleset

    copy = tmp_path / "lang"
    shutil.copytree(ruleset._LANG, copy)
    monkeypatch.setattr(ruleset, "_LANG", copy)
    before = ruleset.language_digest()
    (copy / "objects.py").write_text((copy / "objects.py").read_text() + "\n# changed\n")
    edited = ruleset.language_digest()
    (copy / "newcomer.py").write_text("")
    added = ruleset.language_digest()
    assert len({before, edited, added}) == 3


def test_a_cached_load_gives_the_same_rules_as_a_fresh_parse(tmp_path, monkeypatch):
    monkeypatch.setenv("IONM_LOGIC_CACHE", str(tmp_path))
    # The cache is JSON since issue 15 (a pickle could run code): one .json file, no pickle.
    from ionm_logic.lang.serial import to_data

    fresh = load_rules()
    assert len(list((tmp_path / "ionm-logic").glob("rules-v*.json"))) == 1
    assert not list((tmp_path / "ionm-logic").glob("*.pickle"))
    cached = load_rules()
    assert [(r.id, r.file, r.line) for r in cached.rules] == [(r.id, r.file, r.line) for r in fresh.rules]
    assert to_data(cached.files, cached.problems) == to_data(fresh.files, fresh.problems)
    assert cached.rules[0].body == fresh.rules[0].body and cached.decls == fresh.decls
    assert cached.sha256 == fresh.sha256
