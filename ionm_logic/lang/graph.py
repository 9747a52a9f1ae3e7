"""Reachability over the rules' dependency graph: the one walk every analysis uses."""
from __future__ import annotations

from typing import Callable, Hashable, Iterable


def reachable(starts: Iterable[Hashable], successors: Callable[[Hashable], Iterable[Hashable]]) -> set:
    """Every node reachable from `starts` by following `successors`, the starts included."""
    seen = set(starts)
    todo = list(seen)
    while todo:
        for nxt in successors(todo.pop()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def dependency_edges(files):
    """(head predicate, body predicate, negated, rule) for every body literal of every rule."""
    from .objects import Literal

    for rf in files:
        for rule in rf.rules:
            for item in rule.body:
                if isinstance(item, Literal):
                    yield rule.head.pred, item.atom.pred, item.negated, rule
