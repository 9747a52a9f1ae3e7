"""Plain-text renderings: the reviewer's report, why-not reports and diffs."""
from __future__ import annotations

from tabulate import tabulate

from ..explain.text import VALUE_LIMIT, plain
from .report import build


def render(decision, detail: str = "short") -> str:
    """The reviewer's report of a Decision as plain text."""
    return render_sections(build(decision, detail))


def render_sections(sections: list) -> str:
    """Sections laid out as text; every string passes `plain`, so no case text starts a line of
    its own or reaches the terminal as a control sequence."""
    out = []
    for i, (title, blocks) in enumerate(sections):
        title = plain(title)
        out.append(title if i == 0 else f"\n{title}")
        out.append("=" * len(title) if i == 0 else "-" * len(title))
        for block in blocks:
            kind = block[0]
            if kind in ("p", "h3"):
                out.append(plain(block[1]))
            elif kind == "status":
                out.append(plain(block[2]))
            elif kind == "ul":
                out += [f"- {plain(item)}" for item in block[1]]
            elif kind == "ol":
                out += [plain(item) for item in block[1]]
            elif kind == "table":
                out.append(tabulate([[plain(c) for c in r] for r in block[1]], headers=block[2], tablefmt="simple"))
            elif kind == "pre":
                out += ["    " + plain(line) for line in block[1]]
    return "\n".join(out) + "\n"


def _render_satisfiers(items, indent: str) -> list:
    lines = []
    for s in items:
        if s["kind"] == "case":
            lines.append(f"{indent}would hold if {s['text']}")
        elif s["kind"] == "fact":
            lines.append(f"{indent}would hold if the rules stated that {s['text']} ({s['atom']}), which they do not")
            if s.get("instead"):
                lines.append(f"{indent}  they state instead: " + "; ".join(
                    f["atom"] + (f" ({f['source']['file']}:{f['source']['line']})" if f["source"] else "")
                    for f in s["instead"]))
        else:
            lines.append(f"{indent}would hold if {s['rule']} concluded it ({s['source']['file']}:{s['source']['line']}): {s['text']}")
            miss = s.get("miss")
            if miss:
                lines.append(f"{indent}  {s['rule']} fails at body literal {miss['fails_at']}: {miss['literal']} — {miss['reason']}")
                lines += _render_satisfiers(miss["would_satisfy"], indent + "    ")
    return lines


def render_why_not(report: dict) -> str:
    """A why-not/v1 report as text."""
    lines = [f"Why not {report['determination']} for {plain(report['line']['code'], VALUE_LIMIT)} ({report['line']['pointer']}) "
             f"under {report['policy']['id']} {report['policy']['version']}?"]
    if not report["rules"]:
        lines.append(f"No rule of {report['policy']['id']} concludes {report['determination']} for any line.")
    for r in report["rules"]:
        where = f"{r['source']['file']}:{r['source']['line']}"
        if r["holds"]:
            lines.append(f"- {r['rule']} ({where}) holds: {r['text']}")
            continue
        lines.append(f"- {r['rule']} ({where}) fails at body literal {r['fails_at']}: {r['literal']}")
        lines.append(f"    {r['reason']}")
        lines += _render_satisfiers(r["would_satisfy"], "    ")
        lines.append(f"    cites: {', '.join(r['citations'])}")
    verdict = "concluded" if report["concluded"] else "not concluded"
    lines.append(f"{report['determination']} is {verdict} for this line.")
    return "\n".join(plain(line) for line in lines) + "\n"


def render_diff(report: dict) -> str:
    """A diff/v1 report as text."""
    left, right = report["left"], report["right"]
    out = [plain(f"Case {plain(report['case_id'], VALUE_LIMIT)}: {left['label']} vs {right['label']}"), ""]
    rows = [[l["pointer"], plain(l["code"], VALUE_LIMIT), l["left"], l["right"], "*" if l["differs"] else ""] for l in report["lines"]]
    rows.append(["overall", "", left["overall"], right["overall"], "*" if left["overall"] != right["overall"] else ""])
    out.append(tabulate(rows, headers=["Line", "Code", left["label"], right["label"], "Differs"]))
    for l in report["lines"]:
        if "only_left" not in l:
            continue
        out.append("")
        out.append(plain(f"{plain(l['code'], VALUE_LIMIT)} ({l['pointer']}): {l['left']} vs {l['right']}"))
        for side, label in (("only_left", left["label"]), ("only_right", right["label"])):
            for f in l[side]:
                out.append(plain(f"  only under {label}: {f['rule']} ({f['determination']}) {f['text']} "
                                 f"[{', '.join(f['citations'])}]"))
    return "\n".join(out) + "\n"
