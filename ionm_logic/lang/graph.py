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


def components(nodes: Iterable[Hashable], successors: Callable[[Hashable], Iterable[Hashable]]) -> list:
    """The strongly connected components of the graph on `nodes`, each a frozenset, every
    component after the components its nodes lead to (Tarjan's order; iterative, so a chain
    thousands of rules deep does not exhaust the interpreter's stack)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    for root in nodes:
        if root in index:
            continue
        work = [(root, iter(successors(root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            for nxt in pending:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(successors(nxt))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    members = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        members.add(member)
                        if member == node:
                            break
                    out.append(frozenset(members))
    return out
