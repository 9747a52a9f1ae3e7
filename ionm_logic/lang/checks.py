"""Static checks of parsed rule files: declarations, arity, safety, stratification, annotations."""
from __future__ import annotations

from dataclasses import dataclass

from .contract import (APPLIES_POLICY, DETERMINATIONS, POLICY_PACK, POLICY_PACK_SOURCE, POLICY_VERSION,
                       POLICY_VERSION_ENDS, PRECEDENCE, READ_BY_PROGRAM, REPORT_ARITY)
from .graph import components, dependency_edges, reachable
from .unify import bind, ground
from .objects import (ROLES, Comparison, Const, Literal, Var, is_anonymous, shown_variable, template_slots)

# The longest chain of predicates, each derived from the next, that a rule set may have: the
# engine evaluates a chain by recursion, and a chain past this depth would end in Python's
# recursion limit mid-decision (the shipped rules are under 20 deep).
MAX_DERIVATION_DEPTH = 100


@dataclass(frozen=True, order=True)
class Problem:
    file: str
    line: int
    level: str  # "error" or "warning"
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file  # line 0: the file as a whole
        return f"{where}: {self.level}: {self.message}"


def check_files(files: list) -> list:
    """Every problem in a set of rule files, in file order; errors make the set unusable."""
    problems: list = []
    decls = _declarations(files, problems)
    citations = _citations(files, problems)
    defined = _check_clauses(files, decls, citations, problems)
    _check_stratified(files, problems)
    _check_usage(files, decls, defined, problems)
    _check_report_predicates(files, decls, problems)
    _check_case_first(files, decls, problems)
    _check_packs(files, problems)
    _check_gates(files, decls, problems)
    _check_recursion(files, problems)
    _check_depth(files, problems)
    return sorted(set(problems), key=lambda p: (_file_order(files, p.file), p.line, p.message))


def _file_order(files, name):
    for i, f in enumerate(files):
        if f.path == name:
            return i
    return len(files)


def _declarations(files, problems):
    decls = {}
    for rf in files:
        for d in rf.decls:
            if d.role not in ROLES:
                problems.append(Problem(d.file, d.line, "error", f"unknown declaration #{d.role}"))
            if d.name in decls:
                first = decls[d.name]
                problems.append(Problem(d.file, d.line, "error",
                                        f"{d.name} is declared again (first declared at {first.file}:{first.line})"))
                continue
            if len(set(d.params)) != len(d.params):
                problems.append(Problem(d.file, d.line, "error", f"{d.name}: a parameter name is repeated"))
            for tmpl in filter(None, (d.template, d.negative_template)):
                for slot in template_slots(tmpl):
                    if slot not in d.params:
                        problems.append(Problem(d.file, d.line, "error",
                                                f"{d.name}: template slot @({slot}) is not one of its parameters"))
            decls[d.name] = d
    return decls


def _citations(files, problems):
    cites = {}
    for rf in files:
        for c in rf.citations:
            if c.key in cites:
                first = cites[c.key]
                problems.append(Problem(c.file, c.line, "error",
                                        f"citation {c.key} is defined again (first at {first.file}:{first.line})"))
                continue
            for required in ("title", "year", "source", "evidence_level"):
                if required not in c.fields:
                    problems.append(Problem(c.file, c.line, "error", f"citation {c.key} has no {required}"))
            cites[c.key] = c
    return cites


def _check_atom(atom, where_file, decls, problems, what):
    decl = decls.get(atom.pred)
    if decl is None:
        problems.append(Problem(where_file, atom.line, "error",
                                f"{what} {atom.pred}/{len(atom.args)} is not declared (add a #pred line)"))
        return None
    if len(atom.args) != decl.arity:
        problems.append(Problem(where_file, atom.line, "error",
                                f"{atom.pred} takes {decl.arity} argument(s) (declared at {decl.file}:{decl.line}) "
                                f"but is used with {len(atom.args)}"))
        return None
    return decl


def _check_clauses(files, decls, citations, problems):
    defined = {}  # predicate -> first (file, line) that defines it
    rule_ids = {}
    for rf in files:
        for fact in rf.facts:
            decl = _check_atom(fact.atom, rf.path, decls, problems, "fact")
            if any(isinstance(a, Var) for a in fact.atom.args):
                problems.append(Problem(rf.path, fact.line, "error",
                                        f"a fact must be ground: {fact.atom} has a variable"))
            if decl is not None and decl.role == "case":
                problems.append(Problem(rf.path, fact.line, "error",
                                        f"{fact.atom.pred} is a #case predicate: its facts come from case files only"))
            for key in fact.citations:
                if key not in citations:
                    problems.append(Problem(rf.path, fact.line, "error", f"citation key {key} is not defined"))
            defined.setdefault(fact.atom.pred, (rf.path, fact.line))
        for rule in rf.rules:
            label = rule.id or f"the rule at line {rule.line}"
            if rule.id is None:
                problems.append(Problem(rf.path, rule.line, "error", "rule has no @rule id"))
            elif rule.id in rule_ids:
                first = rule_ids[rule.id]
                # Blame the later rule: files load shipped first, so that is the author's new one.
                problems.append(Problem(rf.path, rule.line, "error",
                                        f"rule id {rule.id} is already the id of the rule at {first[0]}:{first[1]}; "
                                        "give this rule an id of its own"))
            else:
                rule_ids[rule.id] = (rf.path, rule.line)
            if not rule.template:
                problems.append(Problem(rf.path, rule.line, "error", f"{label} has no @text template"))
            if not rule.citations:
                problems.append(Problem(rf.path, rule.line, "error", f"{label} has no @cites"))
            for key in rule.citations:
                if key not in citations:
                    problems.append(Problem(rf.path, rule.line, "error", f"{label}: citation key {key} is not defined"))
            head_decl = _check_atom(rule.head, rf.path, decls, problems, "head")
            if head_decl is not None and head_decl.role == "case":
                problems.append(Problem(rf.path, rule.line, "error",
                                        f"{label} defines {rule.head.pred}, a #case predicate: case facts come from case files only"))
            for item in rule.body:
                if isinstance(item, Literal):
                    _check_atom(item.atom, rf.path, decls, problems, "predicate")
            _check_safety(rule, label, rf.path, problems)
            variables = set(rule.variables())
            for slot in template_slots(rule.template or ""):
                if slot not in variables:
                    problems.append(Problem(rf.path, rule.line, "error",
                                            f"{label}: template slot @({slot}) is not a variable of the rule"))
            defined.setdefault(rule.head.pred, (rf.path, rule.line))
    return defined


def _check_safety(rule, label, path, problems):
    bound = rule.positive_variables()
    if not any(isinstance(i, Literal) and not i.negated for i in rule.body):
        problems.append(Problem(path, rule.line, "error", f"{label} is unsafe: its body has no positive literal"))
        return
    for name in rule.head.variables():
        if is_anonymous(name):
            problems.append(Problem(path, rule.line, "error", f"{label} is unsafe: '_' in the head binds nothing"))
        elif name not in bound:
            problems.append(Problem(path, rule.line, "error",
                                    f"{label} is unsafe: head variable {name} is not bound by a positive body literal"))
    for item in rule.body:
        if isinstance(item, Literal) and item.negated:
            for name in item.atom.variables():
                if name not in bound:
                    shown = shown_variable(name)
                    problems.append(Problem(path, item.atom.line, "error",
                                            f"{label} is unsafe: variable {shown} in 'not {item.atom.pred}(...)' is not bound by a positive body literal"))
        elif isinstance(item, Comparison):
            for name in item.variables():
                if name not in bound:
                    shown = shown_variable(name)
                    problems.append(Problem(path, item.line, "error",
                                            f"{label} is unsafe: variable {shown} in a comparison is not bound by a positive body literal"))
            if isinstance(item.left, Const) and isinstance(item.right, Const):
                problems.append(Problem(path, item.line, "error", f"{label} compares two constants"))


def _check_stratified(files, problems):
    graph = {}
    for head, body, _neg, _rule in dependency_edges(files):
        graph.setdefault(head, set()).add(body)
    reported = set()
    for head, body, negated, rule in dependency_edges(files):
        if not negated:
            continue
        # A negative edge head -> body lies on a cycle when body reaches head again.
        path = _path(graph, body, head)
        if path is not None and (head, body) not in reported:
            reported.add((head, body))
            cycle = " -> ".join([head] + path)
            problems.append(Problem(rule.file, rule.line, "error",
                                    f"negation cycle (not stratified): {cycle}, through 'not {body}'"))


def _path(graph, start, goal):
    stack, seen = [(start, [start])], {start}
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        for nxt in sorted(graph.get(node, ())):
            if nxt not in seen:
                seen.add(nxt)
                stack.append((nxt, path + [nxt]))
    return None




def _check_usage(files, decls, defined, problems):
    used = {item.atom.pred for rf in files for rule in rf.rules for item in rule.body if isinstance(item, Literal)}
    for name, decl in decls.items():
        if decl.role == "case":
            continue
        if name in used and name not in defined:
            problems.append(Problem(decl.file, decl.line, "warning",
                                    f"{name} is used in a rule body but no fact or rule defines it"))
        elif (name in defined and name not in used and decl.role == "pred"
              and name not in READ_BY_PROGRAM):
            problems.append(Problem(decl.file, decl.line, "warning",
                                    f"{name} is defined but no rule uses it and ionm-logic does not read it"))


def case_dependent(files, decls) -> set:
    """Predicates derived, directly or not, from case facts."""
    users = {}  # body predicate -> the heads of the rules that use it
    for head, body, _negated, _rule in dependency_edges(files):
        users.setdefault(body, set()).add(head)
    return reachable((name for name, d in decls.items() if d.role == "case"), lambda pred: users.get(pred, ()))


def _check_case_first(files, decls, problems):
    """A predicate derived from case facts takes the case as its first argument: one case's
    facts are then found, and evaluated, by that argument."""
    dependent = case_dependent(files, decls)
    for name in sorted(dependent):
        decl = decls.get(name)
        if decl is not None and decl.role != "case" and (not decl.params or decl.params[0] != "Case"):
            problems.append(Problem(decl.file, decl.line, "error",
                                    f"{name} is derived from case facts, so its first argument must be Case"))
    for rf in files:
        for rule in rf.rules:
            if rule.head.pred in dependent and (not rule.head.args or not isinstance(rule.head.args[0], Var)):
                problems.append(Problem(rf.path, rule.line, "error",
                                        f"{rule.id or 'rule'}: the head of {rule.head.pred} must start with the Case variable"))


def _check_report_predicates(files, decls, problems):
    for name, decl in decls.items():
        want = REPORT_ARITY.get(decl.role)
        if want is not None and decl.arity != want:
            problems.append(Problem(decl.file, decl.line, "error",
                                    f"#{decl.role} {name} must take {want} arguments (Case, Line, ...)"))
    for rf in files:
        for rule in rf.rules:
            decl = decls.get(rule.head.pred)
            if decl is None or decl.role != "finding" or len(rule.head.args) != 3:
                continue
            det = rule.head.args[2]
            if not isinstance(det, Const) or det.value not in DETERMINATIONS:
                problems.append(Problem(rf.path, rule.line, "error",
                                        f"{rule.id or 'rule'}: a finding's determination must be one of "
                                        f"{', '.join(DETERMINATIONS)}"))


def _check_packs(files, problems):
    """Every pack's precedence orders every determination its rules can conclude; version
    windows do not overlap."""
    facts = [(rf, f) for rf in files for f in rf.facts]

    def rows(pred):
        found = [(rf, f, tuple(a.value for a in f.atom.args)) for rf, f in facts if f.atom.pred == pred]
        return found + _rows_joined_from_facts(files, facts, pred)

    packs = {v[0]: (rf, f) for rf, f, v in rows(POLICY_PACK)}
    ranks = {}
    for rf, f, (pack, det, rank) in rows(PRECEDENCE):
        ranks.setdefault(pack, {})
        if det in ranks[pack]:
            problems.append(Problem(rf.path, f.line, "error", f"{pack}: {det} is ranked twice"))
        ranks[pack][det] = rank
    for pack, (rf, f) in packs.items():
        given = ranks.get(pack, {})
        missing = [d for d in DETERMINATIONS if d not in given]
        if missing:
            problems.append(Problem(rf.path, f.line, "error",
                                    f"{pack}: the precedence does not order {', '.join(missing)}"))
        if len(set(given.values())) != len(given):
            problems.append(Problem(rf.path, f.line, "error", f"{pack}: two determinations share a precedence rank"))
    versions = {}
    for rf, f, (pack, version, starts) in rows(POLICY_VERSION):
        if pack not in packs:
            problems.append(Problem(rf.path, f.line, "error", f"policy_version names {pack}, which no policy_pack declares"))
        if not _iso(starts):
            problems.append(Problem(rf.path, f.line, "error", f"{pack} {version}: {starts!r} is not an ISO date"))
            continue
        if (pack, version) in {(p, v) for p, v, _s, _w in versions.get(pack, [])}:
            problems.append(Problem(rf.path, f.line, "error", f"{pack}: version {version} is declared twice"))
        versions.setdefault(pack, []).append((pack, version, starts, (rf.path, f.line)))
    ends = {(p, v): (e, rf.path, f.line) for rf, f, (p, v, e) in rows(POLICY_VERSION_ENDS)}
    for pack, items in versions.items():
        items.sort(key=lambda i: i[2])
        for (p, v, start, where), nxt in zip(items, items[1:] + [None]):
            if nxt is not None and nxt[2] == start:
                problems.append(Problem(nxt[3][0], nxt[3][1], "error",
                                        f"{pack}: versions {v} and {nxt[1]} start on the same day"))
            end = ends.get((p, v))
            if end is not None:
                if not _iso(end[0]) or end[0] < start:
                    problems.append(Problem(end[1], end[2], "error", f"{pack} {v}: end {end[0]!r} is not a date after its start"))
                elif nxt is not None and end[0] >= nxt[2]:
                    problems.append(Problem(end[1], end[2], "error",
                                            f"{pack}: version {v} ends {end[0]}, overlapping version {nxt[1]} from {nxt[2]}"))


def _rows_joined_from_facts(files, facts, pred) -> list:
    """Tuples of `pred` that rules derive from facts alone (positive literals over predicates
    defined only by facts, e.g. a precedence written once and named by each pack): the rule's
    file and line stand for where each tuple is written."""
    ruled = {rule.head.pred for rf in files for rule in rf.rules}
    by_pred = {}
    for _rf, f in facts:
        by_pred.setdefault(f.atom.pred, []).append(tuple(a.value for a in f.atom.args))
    out = []
    for rf in files:
        for rule in rf.rules:
            if rule.head.pred != pred or not all(isinstance(i, Literal) and not i.negated
                                                 and i.atom.pred not in ruled for i in rule.body):
                continue
            envs = [{}]
            for item in rule.body:
                envs = [e for env in envs for values in by_pred.get(item.atom.pred, ())
                        for e in [bind(item.atom.args, values, env)] if e is not None]
            out += [(rf, rule, ground(rule.head.args, env)) for env in envs]
    return out


def _iso(text) -> bool:
    import datetime

    try:
        datetime.date.fromisoformat(str(text))
        return True
    except ValueError:
        return False


# Predicates that hold for every pack: naming the pack variable in one of them switches nothing.
_EVERY_PACK = frozenset({POLICY_PACK, POLICY_PACK_SOURCE, POLICY_VERSION, POLICY_VERSION_ENDS, PRECEDENCE})


def _check_gates(files, decls, problems):
    """Every finding rule is gated to the packs it belongs to, and every gate can open.

    A gate is applies_policy(Case, "<pack id>", Version), or applies_policy(Case, Pack, Version)
    with Pack also in a positive literal of a pack switch: a predicate no case fact reaches whose
    facts name the packs that turn the shared rule on (pack_requires_real_time(Pack)). An
    ungated finding would decide the lines of every other payer. A gate naming a pack no
    policy_pack declares, or a version the pack does not declare, and a switch fact naming an
    undeclared pack, would never open."""
    packs, versions = set(), {}
    for rf in files:
        for fact in rf.facts:
            values = [a.value for a in fact.atom.args if isinstance(a, Const)]
            if fact.atom.pred == POLICY_PACK and values:
                packs.add(values[0])
            elif fact.atom.pred == POLICY_VERSION and len(values) >= 2:
                versions.setdefault(values[0], set()).add(values[1])
    dependent = case_dependent(files, decls)
    switches = set()  # (predicate, argument position) of pack switches
    for rf in files:
        for rule in rf.rules:
            decl = decls.get(rule.head.pred)
            label = rule.id or f"the rule at line {rule.line}"
            gates = [i.atom for i in rule.body if isinstance(i, Literal) and not i.negated
                     and i.atom.pred == APPLIES_POLICY and len(i.atom.args) == 3]
            gated = any(isinstance(g.args[1], Const) for g in gates)
            for gate in gates:
                if isinstance(gate.args[1], Var):
                    found = [(i.atom.pred, n) for i in rule.body if isinstance(i, Literal) and not i.negated
                             and i.atom.pred not in dependent and i.atom.pred not in _EVERY_PACK
                             for n, a in enumerate(i.atom.args) if a == gate.args[1]]
                    switches.update(found)
                    gated = gated or bool(found)
            if decl is not None and decl.role == "finding" and not gated:
                problems.append(Problem(rf.path, rule.line, "error",
                                        f"{label} concludes a finding but is not gated to a pack: its body must "
                                        f"include applies_policy(Case, \"<pack id>\", Version), or applies_policy("
                                        "Case, Pack, Version) with Pack in a pack switch such as "
                                        "pack_requires_real_time(Pack); ungated, it decides the lines of every payer"))
            for gate in gates:
                pack, version = gate.args[1], gate.args[2]
                if not isinstance(pack, Const):
                    continue
                if pack.value not in packs:
                    problems.append(Problem(rf.path, gate.line or rule.line, "error",
                                            f"{label}: applies_policy names pack {pack.value!r}, which no policy_pack "
                                            "declares, so the rule can never apply"))
                elif isinstance(version, Const) and version.value not in versions.get(pack.value, ()):
                    declared = ", ".join(sorted(versions.get(pack.value, ()))) or "none"
                    problems.append(Problem(rf.path, gate.line or rule.line, "error",
                                            f"{label}: applies_policy names version {version.value!r} of "
                                            f"{pack.value}, which declares no such version (declared: {declared}), "
                                            "so the rule can never apply"))
    for rf in files:
        for fact in rf.facts:
            for pred, n in switches:
                if fact.atom.pred == pred and n < len(fact.atom.args):
                    value = fact.atom.args[n]
                    if isinstance(value, Const) and value.value not in packs:
                        problems.append(Problem(rf.path, fact.line, "error",
                                                f"{pred} switches rules on for pack {value.value!r}, which no "
                                                "policy_pack declares"))


def _recursive_components(files) -> dict:
    """predicate -> the set of predicates in its strongly connected component, for the
    predicates that depend on themselves."""
    graph = {}
    for head, body, _neg, _rule in dependency_edges(files):
        graph.setdefault(head, set()).add(body)
    out = {}
    for members in components(sorted(graph), lambda p: sorted(graph.get(p, ()))):
        if len(members) > 1 or next(iter(members)) in graph.get(next(iter(members)), ()):
            for member in members:
                out[member] = set(members)
    return out


def _check_recursion(files, problems):
    """Reject the recursion shapes pyDatalog (0.22) never finishes evaluating: a rule whose
    body uses its own recursive predicate group twice (non-linear recursion, e.g. transitivity
    written p(A, C) :- p(A, B), p(B, C)) beside another recursive rule of the group (e.g.
    symmetry, p(A, B) :- p(B, A)). Measured: that pair loops forever on two operated levels,
    while each alone, or transitivity written left-recursive over a base predicate, finishes."""
    components = _recursive_components(files)
    groups = {}
    for rf in files:
        for rule in rf.rules:
            component = components.get(rule.head.pred)
            if component is None:
                continue
            recursive = [i for i in rule.body if isinstance(i, Literal) and i.atom.pred in component]
            if recursive:
                groups.setdefault(frozenset(component), []).append((rule, len(recursive)))
    for component, rules in groups.items():
        nonlinear = [rule for rule, count in rules if count > 1]
        if nonlinear and len(rules) > 1:
            for rule in nonlinear:
                others = ", ".join(r.id or f"line {r.line}" for r, _c in rules if r is not rule)
                problems.append(Problem(rule.file, rule.line, "error",
                                        f"{rule.id or 'rule'} uses its own recursive predicate "
                                        f"({', '.join(sorted(component))}) twice in its body, beside the "
                                        f"recursive rule(s) {others}: the engine never finishes evaluating that "
                                        "shape; write the closure left-recursive over a base predicate, "
                                        "p(A, C) :- p(A, B), step(B, C)"))


def _check_depth(files, problems):
    """A chain of predicates, each derived from the next, longer than MAX_DERIVATION_DEPTH."""
    graph = {}
    for head, body, _neg, _rule in dependency_edges(files):
        graph.setdefault(head, set()).add(body)
    components = _recursive_components(files)
    depth = {}
    for start in sorted(graph):
        if start in depth:
            continue
        # Iterative post-order walk: the rule chains this guards against are too deep to recurse.
        stack = [(start, iter(sorted(graph.get(start, ()))))]
        on_path = {start}
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                on_path.discard(node)
                depth[node] = 1 + max((depth.get(c, 0) for c in graph.get(node, ())
                                       if c not in components.get(node, ())), default=0)
                continue
            if child in depth or child in on_path or child in components.get(node, ()):
                continue
            on_path.add(child)
            stack.append((child, iter(sorted(graph.get(child, ())))))
    edges = {}  # (head, body) -> the first rule making head depend on body
    for head, body, _neg, rule in dependency_edges(files):
        edges.setdefault((head, body), rule)
    for pred in sorted(depth):
        # Report where a chain crosses the limit: a predicate past it whose deepest body
        # predicate is within it, at the rule that links the two.
        below = [b for b in sorted(graph.get(pred, ())) if b not in components.get(pred, ())]
        deepest = max(below, key=lambda b: depth.get(b, 0), default=None)
        if depth[pred] > MAX_DERIVATION_DEPTH and deepest is not None and depth.get(deepest, 0) <= MAX_DERIVATION_DEPTH:
            rule = edges[(pred, deepest)]
            chain, node = [pred], deepest
            while node is not None and len(chain) < 5:
                chain.append(node)
                below = [b for b in sorted(graph.get(node, ())) if b not in components.get(node, ())]
                node = max(below, key=lambda b: depth.get(b, 0), default=None)
            problems.append(Problem(rule.file, rule.line, "error",
                                    f"{rule.id or 'rule'}: {pred} is derived through a chain of more than "
                                    f"{MAX_DERIVATION_DEPTH} predicates, each from the next "
                                    f"({' <- '.join(chain)} <- ...); the engine evaluates a chain by recursion, "
                                    f"so {MAX_DERIVATION_DEPTH} is the limit"))
