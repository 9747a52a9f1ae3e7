"""Compare the decisions on one case under two payers or two dates, line by line."""
from __future__ import annotations

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
