"""Decisions and their explanations, over an Engine and a posed case (case.pose).

Public surface: `decide(kb, posed) -> Decision` (document, basis and what reports show),
`exercised_rules`, `Prover` (proof replay), `missing_documentation`, `why_not` and
`check_target`, `diff`, `run_query`; `OUTPUT_SCHEMA`. Nothing here imports the top-level
modules (case, policy, api, cli) or render/.
"""
from .decide import OUTPUT_SCHEMA, Decision, decide, exercised_rules, report_details
from .diff import diff
from .missing import count_limits, missing_documentation
from .proof import Prover, ProofError
from .query import run_query
from .whynot import check_target, why_not

__all__ = ["OUTPUT_SCHEMA", "Decision", "ProofError", "Prover", "check_target", "count_limits", "decide", "diff",
           "exercised_rules", "missing_documentation", "report_details", "run_query", "why_not"]
