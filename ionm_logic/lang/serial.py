"""Parsed rule files as plain JSON data and back: the parsed-rule cache's format.

Plain data cannot run code when it is read (a pickle can): a cache file someone else planted
is at worst wrong data, and reading checks every field's type, so a file of the wrong shape is
refused (SerialError) and the rules are parsed afresh.
"""
from __future__ import annotations

from .objects import Atom, Citation, Comparison, Const, Fact, Literal, PredDecl, Rule, RuleFile, Var

FORMAT = "ionm-logic/parsed-rules/v1"


class SerialError(ValueError):
    """The data is not parsed rule files of this format."""


def _term(t) -> list:
    return ["v", t.name] if isinstance(t, Var) else ["c", t.value]


def _atom(a: Atom) -> list:
    return [a.pred, [_term(t) for t in a.args], a.line, a.column]


def _item(i) -> list:
    if isinstance(i, Literal):
        return ["lit", _atom(i.atom), i.negated]
    return ["cmp", i.op, _term(i.left), _term(i.right), i.line, i.column]


def to_data(files: list, problems: list) -> dict:
    """The JSON-ready form of parsed files and their check problems."""
    return {"format": FORMAT, "files": [{
        "path": f.path,
        "decls": [[d.name, list(d.params), d.role, d.template, d.negative_template, d.file, d.line] for d in f.decls],
        "citations": [[c.key, c.fields, c.file, c.line] for c in f.citations],
        "facts": [[_atom(x.atom), list(x.citations), x.file, x.line] for x in f.facts],
        "rules": [[r.id, _atom(r.head), [_item(i) for i in r.body], list(r.citations), r.template, r.file, r.line]
                  for r in f.rules],
    } for f in files], "problems": [[p.file, p.line, p.level, p.message] for p in problems]}


def _want(value, kind, what="value"):
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise SerialError(f"{what}: expected {getattr(kind, '__name__', kind)}")
    return value


def _str_or_none(value):
    return None if value is None else _want(value, str)


def _read_term(data):
    tag, value = _want(data, list)
    if tag == "v":
        return Var(_want(value, str))
    if tag == "c" and isinstance(value, (str, int)) and not isinstance(value, bool):
        return Const(value)
    raise SerialError("term")


def _read_atom(data) -> Atom:
    pred, args, line, column = _want(data, list)
    return Atom(_want(pred, str), tuple(_read_term(a) for a in _want(args, list)), _want(line, int),
                _want(column, int))


def _read_item(data):
    data = _want(data, list)
    if data and data[0] == "lit" and len(data) == 3:
        return Literal(_read_atom(data[1]), _want(data[2], bool))
    if data and data[0] == "cmp" and len(data) == 6:
        return Comparison(_want(data[1], str), _read_term(data[2]), _read_term(data[3]), _want(data[4], int),
                          _want(data[5], int))
    raise SerialError("body item")


def from_data(data) -> tuple:
    """(files, problems) from to_data's form; SerialError if the data has any other shape."""
    from .checks import Problem

    try:
        if _want(data, dict).get("format") != FORMAT:
            raise SerialError("format")
        files = []
        for f in _want(data["files"], list):
            f = _want(f, dict)
            decls = [PredDecl(_want(n, str), tuple(_want(x, str) for x in _want(ps, list)), _want(role, str),
                              _want(t, str), _str_or_none(nt), _want(file, str), _want(line, int))
                     for n, ps, role, t, nt, file, line in _want(f["decls"], list)]
            citations = []
            for key, fields, file, line in _want(f["citations"], list):
                for name, value in _want(fields, dict).items():
                    if not isinstance(value, (str, int)) or isinstance(value, bool):
                        raise SerialError("citation field")
                citations.append(Citation(_want(key, str), fields, _want(file, str), _want(line, int)))
            facts = [Fact(_read_atom(a), tuple(_want(k, str) for k in _want(cs, list)), _want(file, str),
                          _want(line, int)) for a, cs, file, line in _want(f["facts"], list)]
            rules = [Rule(_str_or_none(rid), _read_atom(head), tuple(_read_item(i) for i in _want(body, list)),
                          tuple(_want(k, str) for k in _want(cs, list)), _str_or_none(t), _want(file, str),
                          _want(line, int)) for rid, head, body, cs, t, file, line in _want(f["rules"], list)]
            files.append(RuleFile(_want(f["path"], str), decls, citations, facts, rules))
        problems = [Problem(_want(file, str), _want(line, int), _want(level, str), _want(message, str))
                    for file, line, level, message in _want(data["problems"], list)]
    except (KeyError, TypeError, ValueError) as exc:  # wrong keys, wrong lengths to unpack, wrong types
        raise SerialError(f"not parsed rule files: {exc}") from None
    return files, problems
