"""Compare the decisions on one case under two payers or two dates, line by line."""
from __future__ import annotations

from tabulate import tabulate

DIFF_SCHEMA = "ionm-logic/diff/v1"


def diff(left: dict, right: dict, labels: tuple) -> dict:
    """Per line, both headlines; for lines that differ, the rules and citations on one side only."""
    lines = []
    for a, b in zip(left["lines"], right["lines"]):
        entry = {"pointer": a["pointer"], "code": a["code"], "left": a["determination"], "right": b["determination"],
                 "differs": a["determination"] != b["determination"]}
        if entry["differs"] or {f["rule"] for f in a["findings"]} != {f["rule"] for f in b["findings"]}:
            entry["only_left"] = _only(a, b)
            entry["only_right"] = _only(b, a)
        lines.append(entry)
    return {
        "schema": DIFF_SCHEMA, "case_id": left["case_id"],
        "left": {"label": labels[0], "policy": left["policy"], "overall": left["overall"]["determination"]},
        "right": {"label": labels[1], "policy": right["policy"], "overall": right["overall"]["determination"]},
        "lines": lines,
        "citations": {**left["citations"], **right["citations"]},
    }


def _only(mine: dict, other: dict) -> list:
    theirs = {f["rule"] for f in other["findings"]}
    return [{"rule": f["rule"], "determination": f["determination"], "text": f["text"], "citations": f["citations"]}
            for f in mine["findings"] if f["rule"] not in theirs]


def render_text(report: dict) -> str:
    left, right = report["left"], report["right"]
    out = [f"Case {report['case_id']}: {left['label']} vs {right['label']}", ""]
    rows = [[l["pointer"], l["code"], l["left"], l["right"], "*" if l["differs"] else ""] for l in report["lines"]]
    rows.append(["overall", "", left["overall"], right["overall"], "*" if left["overall"] != right["overall"] else ""])
    out.append(tabulate(rows, headers=["Line", "Code", left["label"], right["label"], "Differs"]))
    for l in report["lines"]:
        if "only_left" not in l:
            continue
        out.append("")
        out.append(f"{l['code']} ({l['pointer']}): {l['left']} vs {l['right']}")
        for side, label in (("only_left", left["label"]), ("only_right", right["label"])):
            for f in l[side]:
                out.append(f"  only under {label}: {f['rule']} ({f['determination']}) {f['text']} "
                           f"[{', '.join(f['citations'])}]")
    return "\n".join(out) + "\n"
