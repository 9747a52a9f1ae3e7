"""Parse rule files (Prolog-style text) into rule objects, with file:line:column errors.

The grammar is lark's LALR; objects.py holds the objects it builds. This module is imported
only when rule text has to be parsed (a changed rule file, a query, `ionm-logic check`).
"""
from __future__ import annotations

import itertools
import re

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

from .objects import (COMPARISONS, Atom, Citation, Comparison, Const, Fact, Literal, PredDecl, Rule,
                      RuleError, RuleFile, Var, anonymous_variable,
                      is_reserved_variable)

GRAMMAR = r"""
start: _item*

_item: decl | citation | clause_block

decl: DECL_ROLE NAME params "::" STRING ("|" STRING)? "."
params: ("(" VARIABLE ("," VARIABLE)* ")")?
DECL_ROLE: "#pred" | "#case" | "#finding" | "#consideration" | "#observation"

citation: "#citation" KEY "{" field ("," field)* ","? "}" "."
field: NAME ":" (STRING | INT | NAME)

clause_block: annotation* atom (":-" body)? "."
annotation: "@rule" RULE_ID                -> ann_rule
          | "@cites" KEY ("," KEY)*        -> ann_cites
          | "@text" STRING                 -> ann_text

body: body_item ("," body_item)*
body_item: atom                            -> positive
         | "not" atom                      -> negative
         | term OP term                    -> comparison

atom: NAME ("(" term ("," term)* ")")?
term: VARIABLE | NAME | STRING | INT

OP: "=<" | "<=" | ">=" | "!=" | "<" | ">" | "="
NAME: /[a-z][a-zA-Z0-9_]*/
VARIABLE: /[A-Z_][a-zA-Z0-9_]*/
RULE_ID: /[A-Z][A-Z0-9_-]*/
KEY: /[a-z0-9][a-z0-9._-]*/
STRING: /"(?:[^"\\\n]|\\.)*"/ | /'(?:[^'\\\n]|\\.)*'/
INT: /-?[0-9]+/
COMMENT: /%[^\n]*/

%import common.WS
%ignore WS
%ignore COMMENT
"""

_PARSER = None
# The longest integer rule text may write: ranks, ages, years and counts need a few digits, and
# Python refuses to read integers past 4300 digits.
MAX_INT_DIGITS = 18


def _parser() -> Lark:
    """The LALR parser, built on first use: building it costs more than most runs parse."""
    global _PARSER
    if _PARSER is None:
        _PARSER = Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)
    return _PARSER

def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


class _Builder(Transformer):
    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.anonymous = itertools.count(1)

    def start(self, items):
        decls = [i for i in items if isinstance(i, PredDecl)]
        cites = [i for i in items if isinstance(i, Citation)]
        facts = [i for i in items if isinstance(i, Fact)]
        rules = [i for i in items if isinstance(i, Rule)]
        return RuleFile(self.path, decls, cites, facts, rules)

    @v_args(meta=True)
    def decl(self, meta, children):
        role_tok, name_tok, params = children[0], children[1], children[2]
        strings = [_unquote(str(s)) for s in children[3:]]
        return PredDecl(str(name_tok), params, str(role_tok)[1:], strings[0],
                        strings[1] if len(strings) > 1 else None, self.path, meta.line)

    def params(self, children):
        return tuple(str(c) for c in children)

    @v_args(meta=True)
    def citation(self, meta, children):
        key = str(children[0])
        fields = {}
        for name, value in children[1:]:
            if name in fields:
                raise RuleError(self.path, meta.line, None, f"citation {key}: field {name} given twice")
            fields[name] = value
        return Citation(key, fields, self.path, meta.line)

    def field(self, children):
        name, value = children
        if value.type == "STRING":
            return str(name), _unquote(str(value))
        if value.type == "INT":
            if len(str(value).lstrip("-")) > MAX_INT_DIGITS:
                raise RuleError(self.path, value.line, value.column,
                                f"integer {str(value)[:20]}... has {len(str(value).lstrip('-'))} digits; "
                                f"the limit is {MAX_INT_DIGITS}")
            return str(name), int(value)
        return str(name), str(value)

    def ann_rule(self, children):
        return ("rule", str(children[0]), children[0])

    def ann_cites(self, children):
        return ("cites", tuple(str(c) for c in children), children[0])

    def ann_text(self, children):
        return ("text", _unquote(str(children[0])), children[0])

    @v_args(meta=True)
    def clause_block(self, meta, children):
        annotations = [c for c in children if isinstance(c, tuple)]
        rest = [c for c in children if not isinstance(c, tuple)]
        head = rest[0]
        body = rest[1] if len(rest) > 1 else None
        seen = {}
        for kind, value, tok in annotations:
            if kind in seen:
                raise RuleError(self.path, tok.line, tok.column, f"@{kind} given twice for one clause")
            seen[kind] = value
        line = head.line
        if body is None:
            if "rule" in seen or "text" in seen:
                raise RuleError(self.path, line, head.column,
                                "a fact takes only @cites; @rule and @text belong to rules")
            return Fact(head, seen.get("cites", ()), self.path, line)
        return Rule(seen.get("rule"), head, tuple(body), seen.get("cites", ()), seen.get("text"), self.path, line)

    def body(self, children):
        return children

    def positive(self, children):
        return Literal(children[0], False)

    def negative(self, children):
        return Literal(children[0], True)

    def comparison(self, children):
        left, op, right = children
        return Comparison(COMPARISONS[str(op)], left, right, op.line, op.column)

    @v_args(meta=True)
    def atom(self, meta, children):
        name = children[0]
        return Atom(str(name), tuple(children[1:]), name.line, name.column)

    def term(self, children):
        tok: Token = children[0]
        if tok.type == "VARIABLE":
            name = str(tok)
            if name == "_":
                return anonymous_variable(next(self.anonymous))
            if is_reserved_variable(name):
                raise RuleError(self.path, tok.line, tok.column,
                                f"variable {name}: names starting with '_' are reserved ('_' alone is the "
                                "anonymous variable)")
            return Var(name)
        if tok.type == "INT":
            if len(str(tok).lstrip("-")) > MAX_INT_DIGITS:
                raise RuleError(self.path, tok.line, tok.column,
                                f"integer {str(tok)[:20]}... has {len(str(tok).lstrip('-'))} digits; "
                                f"the limit is {MAX_INT_DIGITS}")
            return Const(int(tok))
        if tok.type == "STRING":
            return Const(_unquote(str(tok)))
        return Const(str(tok))


# How an error names the grammar's terminals that match a class of words; every other terminal
# matches one literal spelling (lark names some of them __ANON_n), and an error quotes it.
_EXPECTED_NAMES = {
    "NAME": "a name", "VARIABLE": "a variable", "STRING": "a quoted string", "INT": "an integer",
    "KEY": "a citation key", "RULE_ID": "a rule id", "OP": "a comparison", "DECL_ROLE": "a declaration",
}


def _terminal_words(name: str) -> str:
    if name in _EXPECTED_NAMES:
        return _EXPECTED_NAMES[name]
    try:
        pattern = _parser().get_terminal(name).pattern
    except KeyError:  # pragma: no cover - a terminal lark made up; say it as plainly as we can
        return name.strip("_").lower().replace("_", " ")
    return f"'{pattern.value}'" if pattern.type == "str" else name.lower().replace("_", " ")


def _describe_expected(expected) -> str:
    names = sorted({_terminal_words(e) for e in expected})
    return ", ".join(names[:8])


def _ends_clause(expected) -> bool:
    """Whether a '.' would have been accepted where the parser stopped."""
    return any(_terminal_words(e) == "'.'" for e in expected)


def _token_before(text: str, position: int):
    """The last token of `text` that ends before `position` (comments and spaces skipped)."""
    last = None
    try:
        for token in _parser().lex(text):
            if token.start_pos >= position:
                break
            last = token
    except UnexpectedInput:
        pass
    return last


def parse_text(text: str, path: str) -> RuleFile:
    """Parse one rule file's text; `path` is the name errors and proofs use."""
    try:
        tree = _parser().parse(text)
    except UnexpectedCharacters as exc:
        raise RuleError(path, exc.line, exc.column, f"unexpected character {text[exc.pos_in_stream]!r}"
                        + (f"; expected {_describe_expected(exc.allowed)}" if exc.allowed else "")) from None
    except UnexpectedEOF as exc:
        lines = text.splitlines() or [""]
        raise RuleError(path, len(lines), len(lines[-1]) + 1,
                        f"the file ends inside a clause (a missing '.'?); expected {_describe_expected(exc.expected)}"
                        ) from None
    except UnexpectedToken as exc:
        if exc.token.type == "$END":
            lines = text.splitlines() or [""]
            raise RuleError(path, len(lines), len(lines[-1]) + 1,
                            "the file ends inside a clause (a missing '.'?)") from None
        before = _token_before(text, exc.token.start_pos)
        if before is not None and before.end_line < exc.line and _ends_clause(exc.expected):
            # The clause before this token lacks its '.': say so where the '.' belongs, not at
            # the next clause, whose first word is not the mistake.
            raise RuleError(path, before.end_line, before.end_column,
                            f"the clause ends here without its final '.' (the next clause starts at line "
                            f"{exc.line})") from None
        raise RuleError(path, exc.line, exc.column, f"unexpected {str(exc.token)!r}; expected "
                        + _describe_expected(exc.expected)) from None
    except UnexpectedInput as exc:  # pragma: no cover - lark's other parse errors
        raise RuleError(path, getattr(exc, "line", 0), getattr(exc, "column", 0), str(exc)) from None
    try:
        return _Builder(path).transform(tree)
    except VisitError as exc:
        if isinstance(exc.orig_exc, RuleError):
            raise exc.orig_exc from None
        raise


def parse_query(text: str) -> Atom:
    """Parse an ad hoc query such as `level_rank(Level, 24)` with the rule grammar."""
    rf = parse_text(text.strip().rstrip(".") + ".", "<query>")
    if len(rf.facts) != 1 or rf.rules or rf.decls or rf.citations:
        raise RuleError("<query>", 1, 1, "a query is one atom, such as level_rank(Level, 24)")
    return rf.facts[0].atom


