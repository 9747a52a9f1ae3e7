"""The contract between the rules and the program: every predicate and value Python reads.

Rule authors may add predicates freely; the names below are the ones ionm-logic itself asks
for, so renaming one in rules/ breaks the program. `ionm-logic check` treats them as used.
"""
from __future__ import annotations

# The fixed determination vocabulary of the output (design.md "Determinations"); a finding's
# third argument is one of them.
DETERMINATIONS = (
    "not_separately_reimbursable", "requirements_not_met", "documentation_insufficient",
    "not_medically_necessary", "insufficient_evidence", "medically_necessary",
)
UNDETERMINED = "undetermined"
# Declaration roles whose rules a report shows, with the arity each must have (Case, Line, ...).
REPORT_ARITY = {"finding": 3, "consideration": 3, "observation": 2}

# Policy packs: their titles, sources, dated versions, headline precedence and case limits.
POLICY_PACK = "policy_pack"                    # (Pack, Title)
POLICY_PACK_SOURCE = "policy_pack_source"      # (Pack, Citation)
POLICY_VERSION = "policy_version"              # (Pack, Version, Starts)
POLICY_VERSION_ENDS = "policy_version_ends"    # (Pack, Version, Ends)
PRECEDENCE = "determination_precedence"        # (Pack, Determination, Rank)
COUNT_LIMIT = "max_concurrent_cases"           # (Pack, Count): counts missing documentation tries
# Each pack's encoded scope (domain.md §8.1): the procedure classes and modalities whose
# indications it encodes in full, the classes it leaves unencoded (with the reason), the note for
# any other procedure; and, per undecided line, the clause that is not encoded (its reason).
ENCODES_CLASS = "pack_encodes_class"                  # (Pack, Class)
ENCODES_MODALITY = "pack_encodes_modality"            # (Pack, Modality)
LEAVES_CLASS_UNENCODED = "pack_leaves_class_unencoded"  # (Pack, Class, Reason)
SCOPE_NOTE = "pack_scope_note"                        # (Pack, Reason)
LINE_NOT_ENCODED = "line_not_encoded"                 # (Case, Line, Clause): the rule's text is the reason
# The case fact naming the pack and version a case is decided under; a rule whose body names a
# pack in it (applies_policy(Case, pack, _)) is gated to that pack.
APPLIES_POLICY = "applies_policy"              # (Case, Pack, Version)

# The case file's vocabulary: values a case may use are the ones these facts define.
PROCEDURE_KINDS = "known_procedure_kind"
REGIONS = "known_region"
APPROACHES = "known_approach"
INSTRUMENTATION = "known_instrumentation"
OUTCOMES = "known_outcome"                     # outcomes a history entry may record
LEVEL_RANK = "level_rank"                      # (Level, Rank): also the order of levels
MODALITY = "modality"
KNOWN_CODE = "known_code"
CODE_ALLOWS_MODALITY = "code_allows_modality"  # (Code, Modality)

# What reports show besides findings.
CODE_DESCRIPTION = "code_description"          # (Code, Text)
MODALITY_NAME = "modality_name"                # (Modality, Text)
DISPLAY_NAME = "display_name"                  # (Constant, Text): how sentences name a constant
LINE_MODALITY = "line_modality"                # (Case, Line, Modality)
BILLED_LINE = "billed_line"                    # (Case, Line, Code): a case fact; sentences name a line by it
# The predicates whose proofs a report shows as its anatomical basis, in this order.
BASIS_PREDICATES = ("last_cord_level", "most_cranial_operated_level", "structure_at_risk")
# Derived predicates a decision reads besides the report rules' heads.
REPORT_BASIS = (LINE_MODALITY,) + BASIS_PREDICATES + (LINE_NOT_ENCODED,)

# Reading FHIR (rules/fhir/, read by ionm_logic.fhir): what a FHIR code says about the case.
FHIR_SURGICAL_CODE_PROCEDURE = "fhir_surgical_code_procedure"  # (Code, Kind, Region)
FHIR_SURGICAL_CODE_APPROACH = "fhir_surgical_code_approach"    # (Code, Approach)
FHIR_SNOMED_VERTEBRA = "fhir_snomed_vertebra"                  # (SNOMED CT code, Level)
FHIR_PAYER_IDENTIFIER = "fhir_payer_identifier"                # (System, Value, Pack)
FHIR_CASE_FACT = "fhir_case_fact"                              # (Code, Where, Element)

# Predicates whose definitions count as used though no rule body names them: what the program
# reads, and two tables the rules keep for readers (surgical_code_description, monitors).
# COUNT_LIMIT and APPLIES_POLICY are left out: rule bodies use them.
READ_BY_PROGRAM = frozenset({
    POLICY_PACK, POLICY_PACK_SOURCE, POLICY_VERSION, POLICY_VERSION_ENDS, PRECEDENCE,
    PROCEDURE_KINDS, REGIONS, APPROACHES, INSTRUMENTATION, OUTCOMES, LEVEL_RANK, MODALITY,
    MODALITY_NAME, CODE_DESCRIPTION, CODE_ALLOWS_MODALITY, KNOWN_CODE, LINE_MODALITY,
    *BASIS_PREDICATES, "surgical_code_description", "monitors", DISPLAY_NAME,
    ENCODES_CLASS, ENCODES_MODALITY, LEAVES_CLASS_UNENCODED, SCOPE_NOTE, LINE_NOT_ENCODED,
    FHIR_SURGICAL_CODE_PROCEDURE, FHIR_SURGICAL_CODE_APPROACH, FHIR_SNOMED_VERTEBRA, FHIR_PAYER_IDENTIFIER,
    FHIR_CASE_FACT,
})
