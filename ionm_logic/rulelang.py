"""Parse rule files (Prolog-style text) into rule objects, with file:line:column errors.

The language, in one screen (rules/README.md has the full guide):

    % a comment
    #pred level_rank(Level, Rank) :: '@(Level) is vertebral level number @(Rank) from the skull'.
    #case operated_level(Case, Level) :: 'level @(Level) is operated on in @(Case)'.
    #citation saifuddin-1998 {title: "...", year: 1998, source: "...", evidence_level: "..."}.

    level_rank("L1", 20).

    @rule ANAT-BELOW-CORD
    @cites saifuddin-1998
    @text 'the most cranial operated level @(Top) lies below @(Last), the last level holding cord'
    operation_below_cord(Case) :- most_cranial_operated_level(Case, Top), ..., TopRank > LastRank.

Negation is `not atom`; comparisons are `<`, `=<` (or `<=`), `>`, `>=`, `=`, `!=`.
Names starting with a lower-case letter are constants (atoms), quoted text is a string constant,
integers are integers; atoms and strings with the same spelling are the same value.
Variables start with an upper-case letter; `_` is an anonymous variable.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Optional, Union

from lark import Lark, Token, Transformer, v_args
from lark.exceptions import UnexpectedCharacters, UnexpectedEOF, UnexpectedInput, UnexpectedToken, VisitError

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

_PARSER = Lark(GRAMMAR, parser="lalr", propagate_positions=True, maybe_placeholders=False)

ROLES = ("pred", "case", "finding", "consideration", "observation")
COMPARISONS = {"<": "<", "=<": "<=", "<=": "<=", ">": ">", ">=": ">=", "=": "==", "!=": "!="}
SLOT = re.compile(r"@\(([A-Za-z_][A-Za-z0-9_]*)\)")


class RuleError(Exception):
    """A problem in a rule file, located at file:line:column."""

    def __init__(self, file: str, line: int, column: Optional[int], message: str):
        self.file, self.line, self.column, self.message = file, line, column, message
        where = f"{file}:{line}" + (f":{column}" if column else "")
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Var:
    name: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Const:
    value: Union[str, int]

    def __str__(self) -> str:
        return render_value(self.value)


Term = Union[Var, Const]


@dataclass(frozen=True)
class Atom:
    pred: str
    args: tuple
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def variables(self) -> list:
        return [a.name for a in self.args if isinstance(a, Var)]

    def __str__(self) -> str:
        return render_atom(self.pred, [a.value if isinstance(a, Const) else a for a in self.args])


@dataclass(frozen=True)
class Literal:
    atom: Atom
    negated: bool = False


@dataclass(frozen=True)
class Comparison:
    op: str  # pyDatalog spelling: < <= > >= == !=
    left: Term
    right: Term
    line: int = field(default=0, compare=False)
    column: int = field(default=0, compare=False)

    def variables(self) -> list:
        return [t.name for t in (self.left, self.right) if isinstance(t, Var)]


BodyItem = Union[Literal, Comparison]


@dataclass
class PredDecl:
    name: str
    params: tuple
    role: str
    template: str
    negative_template: Optional[str]
    file: str
    line: int

    @property
    def arity(self) -> int:
        return len(self.params)


@dataclass
class Citation:
    key: str
    fields: dict
    file: str
    line: int


@dataclass
class Fact:
    atom: Atom
    citations: tuple
    file: str
    line: int


@dataclass
class Rule:
    id: Optional[str]
    head: Atom
    body: tuple
    citations: tuple
    template: Optional[str]
    file: str
    line: int
    index: int = 0  # position in load order, set by the knowledge base

    def variables(self) -> list:
        """Every named variable of the rule, in order of first appearance."""
        seen = []
        for name in itertools.chain(self.head.variables(), *(_item_vars(i) for i in self.body)):
            if name not in seen:
                seen.append(name)
        return seen

    def positive_variables(self) -> set:
        return {v for i in self.body if isinstance(i, Literal) and not i.negated for v in i.atom.variables()}


def _item_vars(item: BodyItem) -> list:
    return item.atom.variables() if isinstance(item, Literal) else item.variables()


@dataclass
class RuleFile:
    path: str  # the name shown to users: rules/<file> for shipped files, the given path otherwise
    decls: list
    citations: list
    facts: list
    rules: list


def render_value(value) -> str:
    """A constant as it is written in rule text: atoms bare, other strings quoted, ints plain."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Var):
        return value.name
    if re.fullmatch(r"[a-z][a-zA-Z0-9_]*", value) and value != "not":
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_atom(pred: str, values) -> str:
    if not values:
        return pred
    return f"{pred}({', '.join(render_value(v) for v in values)})"


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
                name = f"_Anon{next(self.anonymous)}"
            return Var(name)
        if tok.type == "INT":
            return Const(int(tok))
        if tok.type == "STRING":
            return Const(_unquote(str(tok)))
        return Const(str(tok))


_EXPECTED_NAMES = {
    "NAME": "a name", "VARIABLE": "a variable", "STRING": "a quoted string", "INT": "an integer",
    "KEY": "a citation key", "RULE_ID": "a rule id", "DOT": "'.'", "COMMA": "','", "LPAR": "'('",
    "RPAR": "')'", "OP": "a comparison", "DECL_ROLE": "a declaration", "__ANON_0": "':-'",
}


def _describe_expected(expected) -> str:
    names = sorted({_EXPECTED_NAMES.get(e, e.lower().replace("_", " ")) for e in expected})
    return ", ".join(names[:8])


def parse_text(text: str, path: str) -> RuleFile:
    """Parse one rule file's text; `path` is the name errors and proofs use."""
    try:
        tree = _PARSER.parse(text)
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


def template_slots(template: str) -> list:
    return SLOT.findall(template)
