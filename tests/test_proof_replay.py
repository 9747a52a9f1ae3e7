"""Proof replay (explain.proof.Prover): a derived atom's proof is rebuilt from the rule objects
against the asserted case, with the leaves design.md names, from the least witness."""
import json

import pytest

from conftest import case_with, walk
from ionm_logic.case import parse_case, pose
from ionm_logic.explain import Prover, ProofError


def proving(kb, doc):
    """(posed case, a context manager asserting its facts) for a case document."""
    posed = pose(parse_case(json.dumps(doc)), kb)
    return posed, kb.case_facts(list(posed.pointers))


def leaves(node):
    return [n for n in walk(node) if not n.get("children")]


def test_below_the_cord_proof_binds_the_top_level_the_cord_end_and_their_comparison(kb):
    # Levels S1, L4, L5 with no conus documented: the top operated level is L4 (rank 23), the
    # default last cord level is L1 (rank 20), and 23 > 20 is the comparison.
    posed, facts = proving(kb, case_with(**{"procedure.levels": ["S1", "L4", "L5"]}))
    with facts:
        proof = Prover(kb, posed.key, posed.pointers, posed.policy.pack).prove("operation_below_cord", ("case",))
    assert proof["node"] == "rule" and proof["atom"] == "operation_below_cord(case)"
    kinds = {n["node"] for n in leaves(proof)}
    assert {"case", "fact", "builtin", "absent"} <= kinds
    cases = [n for n in leaves(proof) if n["node"] == "case" and n["pointer"].startswith("/procedure/levels/")]
    assert {n["pointer"] for n in cases} >= {"/procedure/levels/1"}  # L4, the most cranial
    assert any(n["node"] == "fact" and "L1" in n["atom"] for n in leaves(proof))
    assert any(n["node"] == "builtin" and n["atom"] == "23 > 20" for n in leaves(proof))


def test_a_negated_body_literal_becomes_an_absent_leaf(kb):
    posed, facts = proving(kb, case_with(**{"procedure.levels": ["L5"]}))
    with facts:
        proof = Prover(kb, posed.key, posed.pointers, posed.policy.pack).prove(
            "most_cranial_operated_level", ("case", "L5"))
    absent = [n for n in proof["children"] if n["node"] == "absent"]
    assert [n["atom"] for n in absent] == ['not operated_level_below_another(case, "L5")']


def test_every_case_leaf_points_at_the_field_that_gave_it_and_every_fact_leaf_at_its_line(kb):
    posed, facts = proving(kb, case_with())
    with facts:
        proof = Prover(kb, posed.key, posed.pointers, posed.policy.pack).prove("last_cord_level", ("case", "L1"))
    for leaf in leaves(proof):
        if leaf["node"] == "case":
            assert leaf["pointer"] in set(posed.pointers.values())
        elif leaf["node"] == "fact":
            fact = next(f for f in kb.facts if f.file == leaf["source"]["file"] and f.line == leaf["source"]["line"])
            assert fact.atom.pred in leaf["atom"]


def test_an_atom_nothing_derives_cannot_be_proved(kb):
    posed, facts = proving(kb, case_with(**{"procedure.levels": ["L5"]}))
    with facts:
        prover = Prover(kb, posed.key, posed.pointers, posed.policy.pack)
        with pytest.raises(ProofError):
            prover.prove("most_cranial_operated_level", ("case", "T4"))


def test_proofs_no_case_fact_reaches_are_built_once_and_shared_by_every_case(kb):
    first, facts = proving(kb, case_with(**{"procedure.levels": ["L5"]}))
    with facts:
        a = Prover(kb, first.key, first.pointers, first.policy.pack).prove("level_rank", ("L5", 24))
    second, facts = proving(kb, case_with(**{"procedure.levels": ["T10"]}))
    with facts:
        b = Prover(kb, second.key, second.pointers, second.policy.pack).prove("level_rank", ("L5", 24))
    assert a is b and a["node"] == "fact"
