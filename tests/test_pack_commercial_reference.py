"""Rules of the commercial-reference pack, each fired by a case built from domain.md §4 and §8."""
import pytest

from conftest import by_code, case_with, decide, rules_of

MONITORING_OK = {"setting": "in_room", "technologist_in_room": True,
                 "professional": {"member_of_surgical_team": False, "real_time": True, "concurrent_cases": 1},
                 "report": {"findings": "normal", "interventions": []}}


def cranial(kind, region, services, codes=()):
    return case_with(**{"procedure": {"description": kind, "kind": kind, "region": region, "levels": [],
                                      "codes": list(codes)},
                        "services": services, "monitoring": MONITORING_OK, "diagnoses": [], "history": []})


def line(kb, doc, code):
    return by_code(decide(kb, doc))[code]


def test_eeg_in_carotid_endarterectomy_is_medically_necessary(kb):
    doc = cranial("endarterectomy", "vascular", [{"code": "95955"}, {"code": "95940", "units": 4}], ["35301"])
    result = by_code(decide(kb, doc))
    assert result["95955"]["determination"] == "medically_necessary"
    assert rules_of(result["95955"]) == {"CR-P2-EEG-CAROTID"}
    assert result["95940"]["determination"] == "medically_necessary"


def test_endarterectomy_without_a_carotid_code_is_not_assumed_carotid(kb):
    # Revision 2 (domain.md §8.4): not carotid, so the cortex is not at risk (no rationale) and EEG
    # is an unlisted use (insufficient evidence) — no longer undetermined.
    doc = cranial("endarterectomy", "vascular", [{"code": "95955"}])
    got = line(kb, doc, "95955")
    assert got["determination"] == "not_medically_necessary"
    assert rules_of(got) == {"PACK-PATHWAY-NOT-AT-RISK", "CR-P3-EEG-OTHER-USE"}


def test_eeg_in_intracranial_vascular_surgery_is_medically_necessary(kb):
    doc = cranial("craniotomy", "vascular", [{"code": "95955"}])
    assert rules_of(line(kb, doc, "95955")) == {"CR-P2-EEG-INTRACRANIAL-VASCULAR"}


def test_posterior_fossa_baep_and_cranial_emg_are_necessary_and_eeg_unproven(kb):
    doc = cranial("posterior_fossa", "cranial", [{"code": "92585"}, {"code": "95867"}, {"code": "95955"}])
    result = by_code(decide(kb, doc))
    assert rules_of(result["92585"]) == {"CR-P2-BAEP-POSTERIOR-FOSSA"}
    assert rules_of(result["95867"]) == {"CR-P2-CRANIAL-EMG-POSTERIOR-FOSSA"}
    # The cortex EEG monitors is not at risk in posterior fossa surgery: a positive reason
    # (domain.md §8.1) that outranks P3's insufficient evidence, which stays beside it.
    assert result["95955"]["determination"] == "not_medically_necessary"
    assert rules_of(result["95955"]) == {"PACK-PATHWAY-NOT-AT-RISK", "CR-P3-EEG-POSTERIOR-FOSSA"}


def test_cranial_emg_in_cranial_tumor_resection_is_medically_necessary(kb):
    # domain.md §8.4: only for a cranial-nerve neuroma or cranial-base lesion (the new flag).
    doc = cranial("tumor_resection", "cranial", [{"code": "95868"}])
    doc["procedure"]["cranial_nerve_tumor"] = True
    assert rules_of(line(kb, doc, "95868")) == {"CR-P2-CRANIAL-EMG-NEUROMA"}


def test_cranial_emg_in_another_cranial_tumor_resection_is_unproven(kb):
    doc = cranial("tumor_resection", "cranial", [{"code": "95868"}])
    doc["procedure"]["cranial_nerve_tumor"] = False
    got = line(kb, doc, "95868")
    assert got["determination"] == "insufficient_evidence"
    assert rules_of(got) == {"CR-P3-CRANIAL-EMG-OTHER-TUMOR"}


@pytest.mark.parametrize("professional, code, want, rule", [
    ({"member_of_surgical_team": True}, "95941", "not_separately_reimbursable", "PACK-SURGICAL-TEAM-TIME"),
    ({"member_of_surgical_team": None}, "95941", "documentation_insufficient", "PACK-SURGICAL-TEAM-UNDOCUMENTED"),
    ({"real_time": False}, "95941", "requirements_not_met", "PACK-REAL-TIME"),
    ({"real_time": None}, "95941", "documentation_insufficient", "PACK-REAL-TIME-UNDOCUMENTED"),
    ({"concurrent_cases": 2}, "95940", "requirements_not_met", "PACK-CONCURRENT-CASES"),
    ({"concurrent_cases": 3}, "G0453", "requirements_not_met", "PACK-CONCURRENT-CASES"),
    ({"concurrent_cases": None}, "G0453", "documentation_insufficient", "PACK-CONCURRENT-CASES-UNDOCUMENTED"),
])
def test_professional_requirements_on_time_codes(kb, professional, code, want, rule):
    prof = {"member_of_surgical_team": False, "real_time": True, "concurrent_cases": 1, **professional}
    doc = case_with(**{"monitoring.professional": prof, "procedure.levels": ["T10", "T11"],
                       "services": [{"code": "95938"}, {"code": code, "units": 2}]})
    got = line(kb, doc, code)
    assert got["determination"] == want
    assert rule in rules_of(got)
    # A surgical-team professional makes the SSEP line not separately reimbursable too (domain.md
    # §8.7), so no line is headlined medically necessary to support the time (§8.10).
    supported = "PACK-TIME-NO-NECESSARY-MODALITY" if professional.get("member_of_surgical_team") else "PACK-TIME-UNDERLYING-NECESSARY"
    assert supported in rules_of(got)


def test_undocumented_concurrent_cases_is_no_finding_on_in_room_95940(kb):
    doc = case_with(**{"monitoring.professional.concurrent_cases": None, "procedure.levels": ["T10"],
                       "services": [{"code": "95938"}, {"code": "95940", "units": 2}]})
    got = line(kb, doc, "95940")
    assert got["determination"] == "medically_necessary"
    assert not any(f["determination"] == "documentation_insufficient" for f in got["findings"])


def test_professional_requirements_do_not_apply_to_modality_lines(kb):
    doc = case_with(**{"monitoring.professional": {"member_of_surgical_team": False, "real_time": False,
                                                   "concurrent_cases": 5},
                       "procedure.levels": ["T10"], "services": [{"code": "95938"}]})
    assert rules_of(line(kb, doc, "95938")) == {"CR-P2-CORD-AT-RISK"}


def test_a_surgical_team_professional_makes_the_modality_lines_not_separately_reimbursable(kb):
    # domain.md §8.7: every IONM line of the case, technical and time.
    doc = case_with(**{"monitoring.professional": {"member_of_surgical_team": True, "real_time": True,
                                                   "concurrent_cases": 1},
                       "procedure.levels": ["T10"], "services": [{"code": "95938"}]})
    got = line(kb, doc, "95938")
    assert got["determination"] == "not_separately_reimbursable"
    assert rules_of(got) == {"PACK-SURGICAL-TEAM-MODALITY", "CR-P2-CORD-AT-RISK"}


def test_time_code_alone_has_no_underlying_modality(kb):
    doc = case_with(**{"services": [{"code": "95941", "units": 1}], "monitoring.professional.concurrent_cases": 1})
    got = line(kb, doc, "95941")
    assert got["determination"] == "not_medically_necessary"
    assert rules_of(got) == {"PACK-TIME-NO-NECESSARY-MODALITY"}


def test_train_of_four_is_not_separately_reimbursable_in_any_procedure(kb):
    doc = cranial("craniotomy", "vascular", [{"code": "95937"}])
    assert rules_of(line(kb, doc, "95937")) == {"PACK-ANESTHESIA-FUNCTION"}


def test_emg_is_unproven_in_spinal_surgery_at_any_level(kb):
    doc = case_with(**{"procedure.levels": ["C4", "C5"], "services": [{"code": "95861"}]})
    assert rules_of(line(kb, doc, "95861")) == {"CR-P3-EMG-IN-SPINE"}


def test_ssep_in_carotid_surgery_has_no_covered_indication(kb):
    # Revision 2 (domain.md §8.1, §8.10): carotid surgery is inside the encoded scope, so SSEP,
    # which P2 does not list there, has no covered indication.
    doc = cranial("endarterectomy", "vascular", [{"code": "95938"}], ["35301"])
    got = line(kb, doc, "95938")
    assert got["determination"] == "not_medically_necessary"
    assert rules_of(got) == {"PACK-NO-COVERED-INDICATION"}


def test_ssep_in_thyroid_surgery_is_undetermined_with_the_unencoded_clause_as_reason(kb):
    # domain.md §8.1: outside the encoded scope no clause denies; the reason comes from the pack.
    doc = cranial("thyroidectomy", "neck", [{"code": "95867"}])
    got = line(kb, doc, "95867")
    assert got["determination"] == "undetermined" and got["findings"] == []
    assert "no clause on monitoring during thyroid or parathyroid surgery" in got["reason"]
