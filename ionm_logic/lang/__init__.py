"""The rule language: rule objects, the parser, static checks and the rules' contract.

Public surface: the objects (`Rule`, `Fact`, `Atom`, `Literal`, `Comparison`, `Var`, `Const`,
`PredDecl`, `Citation`, `RuleFile`, `RuleError`) and their printing (`render_atom`,
`render_value`); `parse.parse_text` and `parse.parse_query` (import `lang.parse` only when text
must be parsed: it loads lark); `checks.check_files` and `checks.Problem`; `unify.bind`,
`graph.reachable`; `contract` (what the program reads of the rules' vocabulary).
Nothing here imports pyDatalog or any other layer.
"""
from .objects import (Atom, Citation, Comparison, Const, Fact, Literal, PredDecl, Rule, RuleError, RuleFile, Var,
                      render_atom, render_value)

__all__ = ["Atom", "Citation", "Comparison", "Const", "Fact", "Literal", "PredDecl", "Rule", "RuleError",
           "RuleFile", "Var", "render_atom", "render_value"]
