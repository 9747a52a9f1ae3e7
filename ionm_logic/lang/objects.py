"""The rule language's objects (atoms, rules, declarations, citations) and how they print.

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


ROLES = ("pred", "case", "finding", "consideration", "observation")
COMPARISONS = {"<": "<", "=<": "<=", "<=": "<=", ">": ">", ">=": ">=", "=": "==", "!=": "!="}
SLOT = re.compile(r"@\(([A-Za-z_][A-Za-z0-9_]*)\)")


class RuleError(Exception):
    """A problem in a rule file, located at file:line:column."""

    def __init__(self, file: str, line: int, column: Optional[int], message: str):
        self.file, self.line, self.column, self.message = file, line, column, message
        where = f"{file}:{line}" + (f":{column}" if column else "")
        super().__init__(f"{where}: {message}")


# `_` in rule text becomes a variable of its own, named with this prefix and a number. The
# prefix is no variable rule text can spell (a variable is a letter or `_` followed by letters,
# digits and `_`), so an anonymous variable never meets a named one; and every other variable
# name starting with `_` is reserved (the parser refuses it), so it cannot pass for one either.
ANONYMOUS_PREFIX = "_#"


def anonymous_variable(number: int) -> "Var":
    """The variable standing for the `number`-th `_` of a clause."""
    return Var(f"{ANONYMOUS_PREFIX}{number}")


def is_anonymous(name: str) -> bool:
    """Whether a variable name stands for a `_` of the rule text."""
    return name.startswith(ANONYMOUS_PREFIX)


def is_reserved_variable(name: str) -> bool:
    """Whether rule text may not name a variable so: `_` followed by anything."""
    return name.startswith("_") and name != "_" and not is_anonymous(name)


def shown_variable(name: str) -> str:
    """A variable as the rule text wrote it: `_` for an anonymous one."""
    return "_" if is_anonymous(name) else name


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

    def variables(self) -> list:
        """Every named variable of the rule, in order of first appearance."""
        cached = self.__dict__.get("_variables")
        if cached is None:
            cached = []
            for name in itertools.chain(self.head.variables(), *(_item_vars(i) for i in self.body)):
                if name not in cached:
                    cached.append(name)
            self.__dict__["_variables"] = cached
        return cached

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


_BARE = re.compile(r"[a-z][a-zA-Z0-9_]*")


def render_value(value) -> str:
    """A constant as it is written in rule text: atoms bare, other strings quoted, ints plain."""
    if isinstance(value, int):
        return str(value)
    if isinstance(value, Var):
        return value.name
    if _BARE.fullmatch(value) and value != "not":
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_atom(pred: str, values) -> str:
    if not values:
        return pred
    return f"{pred}({', '.join(render_value(v) for v in values)})"


def template_slots(template: str) -> list:
    return SLOT.findall(template)
