"""ionm-logic: decide and explain the medical necessity of IONM service lines.

The package is built in layers, each importing only those below it:

    lang/     rule objects, the parser, static checks, the rules' contract with the program
    engine/   RuleSet (pure data and dependency analysis) and Engine (the pyDatalog session)
    explain/  decide, proof replay, missing documentation, why-not, diff, query
    render/   text, markdown, html, dot, json: each takes a finished result
    case, policy, golden, batch, api, cli   the top: case files, policy versions, the façade
    errors    input errors naming a JSON pointer: the one module every layer may raise from

Glossary:

case
    A surgical case with the IONM service lines under review (case file ionm-logic/case/v1).
    Posed to the rules (case.pose) it becomes case facts, each with the JSON pointer of the
    field that gave it.
line
    One billed IONM service (a code, units, maybe a modality); its id is its JSON pointer,
    /services/N.
pack
    A payer's policy as rules (rules/packs/): its clauses, dated versions and the precedence
    of determinations.
version
    One dated edition of a pack; the date of service (or --as-of) picks the one in force.
finding
    A determination a rule derives for a line, with the rule's sentence and proof.
headline
    A line's determination: of its findings, the one the pack's precedence ranks first;
    undetermined when no rule concludes.
consideration, observation
    A point a reviewer should see that changes no headline: on a line, or on the whole case.
proof
    The tree that re-derives a conclusion from the rule objects: rule nodes down to fact,
    case, absent (negation) and builtin (comparison) leaves, each citing its source.
basis
    The proofs of the case's anatomical basis (last cord level, most cranial operated level,
    structures at risk) that reports show first.
missing documentation
    The undocumented fields whose documentation, alone or in pairs, would change a headline.
rule set, engine
    The checked rules as pure data (engine.RuleSet), and their compiled pyDatalog session
    (engine.engine.Engine), which belongs to the thread that made it.
decision
    A finished result (explain.Decision): the determination/v1 document, the basis, and what
    reports show besides.
"""
__version__ = "0.1.0"
