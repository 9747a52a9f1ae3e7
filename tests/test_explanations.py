"""Why-not, payer and date diffs, and the Markdown, HTML and DOT renderings."""
import json
import re

import pytest
from click.testing import CliRunner

from conftest import ROOT
from ionm_logic.cli import main

EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
REFERENCE = str(ROOT / "examples" / "alif-plif-l5-s1.json")


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_why_not_names_the_first_failing_literal_and_what_would_satisfy_it():
    out = run("explain", REFERENCE, "--why-not", "95938=medically_necessary", "--format", "json")
    report = json.loads(out.output)
    assert out.exit_code == 0 and report["schema"] == "ionm-logic/why-not/v1" and not report["concluded"]
    cord = next(r for r in report["rules"] if r["rule"] == "CR-P2-CORD-AT-RISK")
    assert cord["literal"] == "structure_at_risk(case, spinal_cord)"
    deeper = next(s for s in cord["would_satisfy"] if s["rule"] == "RISK-CORD-IN-FIELD")
    nested = deeper["miss"]["would_satisfy"][0]["miss"]
    assert nested["literal"] == "24 =< 20"  # L5 (24) is not at or above L1 (20)
    assert set(report["citations"]) >= {"commercial-reference-policy", "aetna-cpb-0181"}


def test_why_not_on_a_remote_time_line_points_at_the_missing_case_field():
    out = run("explain", REFERENCE, "--why-not", "95941=requirements_not_met")
    assert out.exit_code == 0
    assert re.search(r"PACK-CONCURRENT-CASES \(rules/pack-logic.dl:\d+\) fails at body literal 4: "
                     r"professional_concurrent_cases\(case, Count\)", out.output)
    # The count is not known, so the sentence speaks of "some count": a rule's variable name
    # ("covered Count case(s)") is never English (issue 12).
    assert "the case file recorded that the interpreting professional in the case covered some count case(s)" in out.output


def test_why_not_reports_a_determination_that_holds():
    out = run("explain", REFERENCE, "--why-not", "95937=not_separately_reimbursable")
    assert out.exit_code == 0 and "PACK-ANESTHESIA-FUNCTION" in out.output and "holds" in out.output
    assert out.output.rstrip().endswith("is concluded for this line.")


@pytest.mark.parametrize("target", ["95938", "99999=medically_necessary", "95938=probably"])
def test_why_not_rejects_bad_targets(target):
    assert run("explain", REFERENCE, "--why-not", target).exit_code == 2


def test_diff_between_payers_names_rules_on_one_side_only():
    out = run("diff", REFERENCE, "--payer", "commercial-reference", "--payer", "anthem-cg-surg-104", "--format", "json")
    report = json.loads(out.output)
    emg = next(l for l in report["lines"] if l["code"] == "95861")
    assert emg["differs"] and (emg["left"], emg["right"]) == ("insufficient_evidence", "medically_necessary")
    assert [f["rule"] for f in emg["only_left"]] == ["CR-P3-EMG-IN-SPINE"]
    assert [f["rule"] for f in emg["only_right"]] == ["ANTHEM-PATHWAY-AT-RISK"]
    tof = next(l for l in report["lines"] if l["code"] == "95937")
    assert not tof["differs"]
    text = run("diff", REFERENCE, "--payer", "commercial-reference", "--payer", "anthem-cg-surg-104")
    assert text.exit_code == 0 and "only under anthem-cg-surg-104: ANTHEM-PATHWAY-AT-RISK" in text.output


def test_diff_between_dates_crosses_a_version_boundary():
    case = str(ROOT / "examples" / "c5-c6-acdf-myelopathy-in-room.json")
    out = run("diff", case, "--payer", "cms-lcd-l34623", "--as-of", "2024-01-31", "--as-of", "2024-02-01",
              "--format", "json")
    report = json.loads(out.output)
    assert report["left"]["policy"]["version"] == "2015-10-01" and report["right"]["policy"]["version"] == "2024-02-01"
    # domain.md §8.3: both versions carry the same indication list, so crossing the boundary
    # changes the version and no determination.
    ssep = next(l for l in report["lines"] if l["code"] == "95938")
    assert (ssep["left"], ssep["right"]) == ("medically_necessary", "medically_necessary")
    assert not any(l["differs"] for l in report["lines"])


def test_diff_needs_two_sides():
    assert run("diff", REFERENCE, "--payer", "commercial-reference").exit_code == 2


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_format_works_on_every_example(example):
    for fmt in ("text", "markdown", "html", "dot", "json"):
        out = run("explain", str(example), "--format", fmt)
        assert out.exit_code == 0, (fmt, out.output)
    doc = json.loads(example.read_text())
    assert run("explain", str(example), "--why-not", f"{doc['services'][0]['code']}=medically_necessary").exit_code == 0
    assert run("diff", str(example), "--payer", "anthem-cg-surg-104", "--payer", "cms-lcd-l34623",
               "--as-of", "2025-01-01").exit_code == 0


def test_html_is_self_contained_with_collapsible_proofs_and_linked_references():
    page = run("explain", REFERENCE, "--format", "html").output
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"(src|href)=\"(https?:)?//", page), "no network"
    assert page.count("<details") > 20
    refs = set(re.findall(r'href="#(ref-\d+)"', page))
    anchors = set(re.findall(r'id="(ref-\d+)"', page))
    assert refs and refs <= anchors
    assert "@media print" in page


def test_dot_has_one_cluster_per_finding_and_the_line_filter_works():
    out = run("explain", REFERENCE, "--format", "dot").output
    assert out.startswith('digraph "ionm-logic alif-plif-l5-s1" {') and out.rstrip().endswith("}")
    assert out.count("subgraph cluster_") == 10  # findings of the six lines
    only = run("explain", REFERENCE, "--format", "dot", "--line", "95941").output
    assert only.count("subgraph cluster_") == 2 and "/services/5" in only and "/services/0 95938" not in only
    assert re.findall(r"n\d+ -> n\d+;", only)


def test_text_report_sections_come_in_the_reference_order():
    out = run("explain", REFERENCE).output
    order = ["Medical Necessity Determination", "Anatomical Basis", "Summary", "Analysis by Code",
             "Evidence Quality", "Limited Exceptions", "Common Pitfalls in This Case", "Final Determination",
             "References"]
    positions = [out.index(title) for title in order]
    assert positions == sorted(positions)
    refs = re.findall(r"^(\d+)\. ", out.split("\nReferences\n")[1], re.M)
    assert refs == [str(i) for i in range(1, len(refs) + 1)]
    first_use = [int(n) for marker in re.findall(r"\[(\d+(?:, \d+)*)\]", out.split("\nReferences\n")[0])
                 for n in marker.split(", ")]
    seen = []
    for n in first_use:
        if n not in seen:
            seen.append(n)
    assert seen == list(range(1, len(refs) + 1)), "references are numbered in order of first use"


def test_detail_full_prints_proof_trees():
    short = run("explain", REFERENCE).output
    full = run("explain", REFERENCE, "--detail", "full").output
    assert "Proof of PACK-CORD-PATHWAY-ABSENT:" in full and "Proof of" not in short
    assert "(rules/anatomy.dl:" in full and "(/procedure/levels/0)" in full


def test_under_medicare_an_l5_s1_fusion_needs_both_myelopathy_and_a_tethered_cord_documented_for_ssep(kb):
    """L34623 covers SSEP for a covered indication (myelopathy) with the spinal cord at risk; at
    L5-S1 the cord is at risk only if it is tethered below its usual end (domain.md §1). With
    neither documented, no single field changes the headline: only the pair does, so the search
    must try pairs of fields whose values each reach a finding rule, even when neither alone
    moves a finding's determination."""
    from conftest import decide

    doc = {
        "schema": "ionm-logic/case/v1", "case_id": "pair", "payer": "cms-lcd-l34623", "date_of_service": "2023-09-12",
        "procedure": {"kind": "fusion", "region": "spine", "levels": ["L5", "S1"], "approaches": ["anterior"]},
        "clinical": {"myelopathy": None, "radiculopathy": True, "tethered_cord": None},
        "monitoring": {"setting": "in_room", "professional": {"member_of_surgical_team": False, "real_time": True,
                                                              "concurrent_cases": 1}},
        "services": [{"code": "95938", "units": 3}],
    }
    line = decide(kb, doc)["lines"][0]
    assert line["determination"] == "not_medically_necessary"
    gaps = [({f["pointer"]: f["value"] for f in g["fields"]}, g["would_become"]) for g in line["missing_documentation"]]
    assert gaps == [({"/clinical/myelopathy": True, "/clinical/tethered_cord": True}, "medically_necessary")]
    doc["clinical"].update(myelopathy=True, tethered_cord=True)
    assert decide(kb, doc)["lines"][0]["determination"] == "medically_necessary"
