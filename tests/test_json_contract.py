"""The ionm-logic/determination/v1 object: shape, proof leaves, pointers, citations, determinism."""
import json

import pytest

from conftest import ROOT, all_proofs, decide, reference_case, resolve_pointer, walk
from ionm_logic.lang.contract import DETERMINATIONS

EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
LEAVES = {"fact", "case", "absent", "builtin"}


@pytest.fixture(scope="module", params=EXAMPLES, ids=[p.stem for p in EXAMPLES])
def example(request, kb):
    doc = json.loads(request.param.read_text())
    return doc, decide(kb, doc)


def test_top_level_keys_and_policy(example):
    _doc, out = example
    assert list(out) == ["schema", "case_id", "payer", "policy", "knowledge_base", "lines", "observations",
                         "overall", "citations"]
    assert out["schema"] == "ionm-logic/determination/v1"
    assert set(out["policy"]) == {"id", "version", "in_force"} and len(out["policy"]["in_force"]) == 2
    kb_info = out["knowledge_base"]
    assert len(kb_info["sha256"]) == 64 and kb_info["rules"] > 0 and kb_info["facts"] > 0


def test_lines_follow_the_input_order(example):
    doc, out = example
    assert [l["pointer"] for l in out["lines"]] == [f"/services/{i}" for i in range(len(doc["services"]))]
    assert [l["code"] for l in out["lines"]] == [s["code"] for s in doc["services"]]
    assert [l["units"] for l in out["lines"]] == [s.get("units", 1) for s in doc["services"]]


def test_headline_is_the_highest_precedence_finding(example):
    _doc, out = example
    for line in out["lines"]:
        found = [f["determination"] for f in line["findings"]]
        if not found:
            assert line["determination"] == "undetermined" and line["reason"]
            continue
        assert set(found) <= set(DETERMINATIONS)
        assert line["determination"] == min(found, key=DETERMINATIONS.index)


def test_every_proof_leaf_is_typed_and_grounded(example):
    doc, out = example
    for item in all_proofs(out):
        root = item["proof"]
        assert root["node"] == "rule" and root["rule"] == item["rule"]
        nodes = list(walk(root))
        leaves = [n for n in nodes if not n.get("children")]
        assert {n["node"] for n in leaves} <= LEAVES
        assert any(n["node"] == "case" for n in leaves)
        for n in nodes:
            assert "@(" not in n.get("text", ""), n
            if n["node"] == "rule":
                assert n["children"] and n["source"]["file"].startswith("rules/")


def test_findings_rest_on_the_service_line_and_a_knowledge_base_fact(example):
    _doc, out = example
    for line in out["lines"]:
        for f in line["findings"]:
            leaves = [n for n in walk(f["proof"]) if not n.get("children")]
            assert any(n["node"] == "case" and n["pointer"].startswith(line["pointer"]) for n in leaves)
            assert any(n["node"] == "fact" for n in leaves)


def test_fact_leaves_point_at_the_line_that_states_them(example):
    _doc, out = example
    for item in all_proofs(out):
        for n in walk(item["proof"]):
            if n["node"] != "fact":
                continue
            text = (ROOT / n["source"]["file"]).read_text().splitlines()
            assert n["atom"].split("(")[0] in text[n["source"]["line"] - 1]


def test_case_leaves_point_into_the_case_file(example):
    doc, out = example
    for item in all_proofs(out):
        for n in walk(item["proof"]):
            if n["node"] != "case" or n["pointer"] == "/payer":
                continue
            value = resolve_pointer(doc, n["pointer"])  # raises if the pointer names nothing
            if isinstance(value, bool):
                assert ("true" if value else "false") in n["atom"]
            elif isinstance(value, (str, int)):
                assert str(value)[:3] in n["atom"], (n, value)


def test_every_citation_resolves(example):
    _doc, out = example
    used = set()
    for item in all_proofs(out):
        used |= set(item["citations"])
        for n in walk(item["proof"]):
            used |= set(n.get("citations") or [])
    assert used <= set(out["citations"])
    for record in out["citations"].values():
        assert {"title", "year", "source", "evidence_level"} <= set(record)


def test_missing_documentation_entries_are_well_formed(example):
    _doc, out = example
    for line in out["lines"]:
        for gap in line["missing_documentation"]:
            assert 1 <= len(gap["fields"]) <= 2
            assert gap["would_become"] != line["determination"]
            assert gap["text"].startswith("Document ")


def test_overall_follows_the_line_headlines(example):
    _doc, out = example
    heads = [l["determination"] for l in out["lines"]]
    want = ("undetermined" if all(h == "undetermined" for h in heads) else
            "medically_necessary" if all(h == "medically_necessary" for h in heads) else
            "not_medically_necessary" if "medically_necessary" not in heads else "partial")
    assert out["overall"]["determination"] == want


def test_same_input_gives_the_same_bytes(kb):
    doc = reference_case()
    first = json.dumps(decide(kb, doc), indent=2)
    decide(kb, json.loads(json.dumps(doc).replace("alif-plif", "other")))  # another case in between
    assert json.dumps(decide(kb, doc), indent=2) == first


def test_case_id_is_echoed_verbatim(kb):
    weird = "x\"'); __import__('os').system('echo pwned')  # ✓ \u202e"
    doc = reference_case()
    doc["case_id"] = weird
    assert decide(kb, doc)["case_id"] == weird
