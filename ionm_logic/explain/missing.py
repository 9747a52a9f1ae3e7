"""Missing documentation: per line, the undocumented fields (alone or in pairs) whose
documentation would change its headline, found by re-deciding the case with each candidate
value filled in.

It runs while the case's own facts are asserted: each variant asserts and retracts only the
facts it changes (PosedCase.delta), and re-asks only the finding rules that depend on them.
A pair asks again only the rules that depend on both of its fields: a rule that depends on
neither keeps its base answer and one that depends on one of them keeps that single's answer
(Datalog: a rule's answers depend only on the facts it depends on).
"""
from __future__ import annotations

import itertools

from ..lang.contract import COUNT_LIMIT
from .headline import rank_min


def count_limits(kb) -> list:
    """The case-count limits the packs compare against (max_concurrent_cases)."""
    return sorted({n for _p, n in kb.values(COUNT_LIMIT, None, None)})


class Variants:
    """The case's finding rules re-asked under documented values, against its base answers."""

    def __init__(self, kb, posed, ev, rules: list, heads: dict, ranks: dict, prover):
        self.kb, self.posed, self.ranks, self.lines = kb, posed, ranks, list(heads)
        self.base_headlines = dict(heads)  # line -> its headline in the case itself
        self.finding_rules = [r for r in rules if kb.decls[r.head.pred].role == "finding"]
        self.position = {kb.index(rule): i for i, rule in enumerate(self.finding_rules)}  # number -> place
        self.finding_numbers = frozenset(self.position)
        self.rule_ids = {kb.index(rule): rule.id for rule in self.finding_rules}
        self.base_heads = {number: [] for number in self.rule_ids}
        for d in itertools.chain(*ev.findings.values()):
            self.base_heads[kb.index(d.rule)].append(d.values)
        # Each finding rule's (line, (rule id, determination)) items in the base, and every
        # line's: a variant's headlines change only by the rules it re-asked.
        self.base_items = {number: [(values[1], (self.rule_ids[number], values[2])) for values in heads
                                    if values[0] == posed.key and values[1] in self.lines]
                           for number, heads in self.base_heads.items()}
        self.base_lines = {line: set() for line in self.lines}
        for items in self.base_items.values():
            for line, item in items:
                self.base_lines[line].add(item)
        self.base_tables = prover.case_tables()  # the case's own tables, which variants keep for untouched rules

    def affected(self, assignments) -> tuple:
        """(add, remove, touched rule numbers) for documenting the (path, value) assignments."""
        add, remove = self.posed.delta(assignments)
        return add, remove, self.kb.touched_rules(add | remove)

    def finding(self, numbers) -> list:
        """The finding rules numbered in `numbers`, in rule order."""
        rules, position = self.finding_rules, self.position
        return [rules[i] for i in sorted([position[n] for n in self.finding_numbers.intersection(numbers)])]

    def ask(self, rules: list, add, remove, touched) -> dict:
        """rule number -> head tuples of `rules` with the delta applied; a rule that kept its
        base witnesses answers with its base heads list itself (headlines skips it)."""
        if not rules:
            return {}
        kb = self.kb
        with kb.fact_delta(add, remove):
            tables = kb.variant_tables(rules, touched, self.posed.policy.pack, self.posed.key)
        out = {}
        for rule in rules:
            number = kb.index(rule)
            table, base = tables[number], self.base_tables.get(number)
            if table is base or table == base:
                out[number] = self.base_heads[number]
            else:
                out[number] = kb.head_tuples(rule, table)
        return out

    def headlines(self, rule_heads: dict) -> dict:
        """line -> headline when the rules in `rule_heads` answer so and the others as in the base."""
        key, base, per_line = self.posed.key, self.base_lines, {}  # per_line: only the lines the rules reach

        def reached(line) -> set:
            found = per_line.get(line)
            if found is None:
                found = per_line[line] = set(base[line])
            return found

        for number, heads in rule_heads.items():
            rule_id = self.rule_ids.get(number)
            if rule_id is None or heads is self.base_heads[number]:
                continue
            for line, item in self.base_items[number]:
                reached(line).discard(item)
            for values in heads:
                if values[0] == key and values[1] in base:
                    reached(values[1]).add((rule_id, values[2]))
        if not per_line:
            return self.base_headlines  # shared: callers read headlines, never change them
        out = dict(self.base_headlines)
        for line, found in per_line.items():
            out[line] = rank_min((det for _r, det in found), self.ranks)
        return out


def _singles(variants: Variants, fields) -> tuple:
    """Per (path, value): the headlines, the re-asked rules' heads, and the numbers of the
    finding rules the value can change."""
    headlines, heads, changed_by = {}, {}, {}
    for path, candidates in fields:
        for value in candidates:
            add, remove, touched = variants.affected([(path, value)])
            affected = variants.finding(touched)
            rule_heads = variants.ask(affected, add, remove, touched)
            headlines[(path, value)] = variants.headlines(rule_heads)
            heads[(path, value)] = rule_heads
            changed_by[(path, value)] = set(rule_heads)
    return headlines, heads, changed_by


def _pairs(variants: Variants, fields, heads: dict, changed_by: dict) -> dict:
    """Per pair of values of two fields: the headlines. A value that no finding rule depends on
    leaves the pair deciding as the other value alone: never minimal, so not asked."""
    out = {}
    for (p1, c1), (p2, c2) in itertools.combinations(fields, 2):
        for v1, v2 in itertools.product(c1, c2):
            first, second = changed_by[(p1, v1)], changed_by[(p2, v2)]
            if not first or not second:
                continue
            common = first & second
            both = variants.finding(common) if common else []
            rule_heads = {**heads[(p1, v1)], **heads[(p2, v2)]}
            if both:
                add, remove, touched = variants.affected([(p1, v1), (p2, v2)])
                rule_heads.update(variants.ask(both, add, remove, touched))
            out[((p1, v1), (p2, v2))] = variants.headlines(rule_heads)
    return out


def _entries(posed, heads: dict, singles: dict, pairs: dict) -> dict:
    """line -> its missing-documentation entries: each single that changes the headline (one
    per field and new headline), then each minimal pair (neither value alone does it)."""
    out = {}
    for line in heads:
        entries, seen = [], set()
        for (path, value), new_heads in singles.items():
            new = new_heads[line]
            if new != heads[line] and (path, new) not in seen:
                seen.add((path, new))
                entries.append(gap(posed, [(path, value)], new))
        for ((p1, v1), (p2, v2)), new_heads in pairs.items():
            new = new_heads[line]
            if new == heads[line] or (p1, p2, new) in seen:
                continue
            if singles[(p1, v1)][line] == new or singles[(p2, v2)][line] == new:
                continue  # not minimal: one of the two alone does it
            seen.add((p1, p2, new))
            entries.append(gap(posed, [(p1, v1), (p2, v2)], new))
        out[line] = entries
    return out


def gap(posed, assignments: list, new: str) -> dict:
    """One missing-documentation entry: the fields and values, the headline, the sentence."""
    parts = []
    for path, value in assignments:
        shown = "true" if value is True else "false" if value is False else str(value).replace("_", " ")
        parts.append(f"{posed.question(path)}; if {shown}")
    text = "Document " + ", and ".join(parts) + f", this line would be {new.replace('_', ' ')}."
    return {"fields": [{"pointer": posed.field_pointer(path), "value": value} for path, value in assignments],
            "would_become": new, "text": text}


def missing_documentation(kb, posed, ev, rules: list, heads: dict, ranks: dict, prover) -> dict:
    """line -> missing-documentation entries, for a case whose facts are asserted."""
    fields = posed.undocumented(count_limits(kb))
    if not fields:
        return {}
    variants = Variants(kb, posed, ev, rules, heads, ranks, prover)
    singles, single_heads, changed_by = _singles(variants, fields)
    pairs = _pairs(variants, fields, single_heads, changed_by)
    return _entries(posed, heads, singles, pairs)
