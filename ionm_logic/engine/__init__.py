"""The rules loaded: a pure RuleSet (data and dependency analysis, no pyDatalog) and the
Engine that compiles it into pyDatalog on one thread and answers questions.

Public surface: `load_rules(dirs) -> RuleSet` (parsed, cached, checked), `RuleSet`
(`pack_rules`, `report_rules`, `depends_on`, `touched_rules`, `head_tuples`, ...), `RulesError`,
`shipped_rules_dir`, `sort_key`; and, from `engine.engine` (imports pyDatalog),
`Engine` (`ask`, `values`, `rule_table`, `case_tables`, `variant_tables`, `case_facts`,
`fact_delta`) and `EngineThreadError`. The Engine evaluates a case stratum by stratum (each
stratum's rules read the lower strata's answers as frozen facts) and a fact delta by re-asking
only what it changes. Importing this package does not import pyDatalog.
"""
from .ruleset import RuleSet, RulesError, load_rules, rule_files, shipped_rules_dir, sort_key

__all__ = ["RuleSet", "RulesError", "load_rules", "rule_files", "shipped_rules_dir", "sort_key"]
