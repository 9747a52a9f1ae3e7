"""Render the rule objects and a case's facts as an ASP program, for clingo to cross-check."""
from ionm_logic.lang.objects import Comparison, Const, Literal

_OPS = {"<": "<", "<=": "<=", ">": ">", ">=": ">=", "==": "=", "!=": "!="}


def term(arg) -> str:
    if isinstance(arg, Const):
        value = arg.value
        if isinstance(value, int):
            return str(value)
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return "V" + arg.name


def atom(pred, args) -> str:
    return f"{pred}({', '.join(term(a) for a in args)})" if args else pred


def rule_text(rule) -> str:
    body = []
    for item in rule.body:
        if isinstance(item, Literal):
            body.append(("not " if item.negated else "") + atom(item.atom.pred, item.atom.args))
        elif isinstance(item, Comparison):
            body.append(f"{term(item.left)} {_OPS[item.op]} {term(item.right)}")
    return f"{atom(rule.head.pred, rule.head.args)} :- {', '.join(body)}."


def program(kb, case_facts=()) -> str:
    lines = [atom(f.atom.pred, f.atom.args) + "." for f in kb.facts]
    lines += [rule_text(r) for r in kb.rules]
    for pred, values in case_facts:
        lines.append(atom(pred, [Const(v) for v in values]) + ".")
    return "\n".join(lines)


def solve(text: str) -> list:
    """Every stable model of the program, as sets of (predicate, values)."""
    import clingo

    ctl = clingo.Control(["0", "--warn=none"])
    ctl.add("base", [], text)
    ctl.ground([("base", [])])
    models = []

    def on_model(model):
        found = set()
        for sym in model.symbols(atoms=True):
            values = tuple(a.number if a.type == clingo.SymbolType.Number else a.string for a in sym.arguments)
            found.add((sym.name, values))
        models.append(found)

    ctl.solve(on_model=on_model)
    return models
