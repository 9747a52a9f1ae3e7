"""A batch's summary as one self-contained HTML page of bar charts (inline SVG, no script, no network).

Charts: headlines by code, by payer and by deciding rule (stacked by determination), errors by
reason, and the fields whose documentation is most often missing. Every text that comes from the
cases (codes, payers, rule ids, error reasons, field names) is escaped.
"""
from __future__ import annotations

import html
from collections import Counter, defaultdict

# Colours per headline, worst for the payer's money first; "error" is a record, not a line.
COLOURS = {
    "medically_necessary": "#2e7d32", "not_medically_necessary": "#c62828", "insufficient_evidence": "#ef6c00",
    "not_separately_reimbursable": "#6a1b9a", "requirements_not_met": "#ad1457",
    "documentation_insufficient": "#f9a825", "undetermined": "#607d8b", "error": "#37474f",
}
TOP = 25


class SummaryPage:
    """Counts what the page shows from each outcome's rows (batch.Options.rows)."""

    def __init__(self):
        self.by = {"code": defaultdict(Counter), "payer": defaultdict(Counter), "deciding rule": defaultdict(Counter)}
        self.errors = Counter()
        self.missing = Counter()
        self.records = self.decided = self.lines = 0

    def __call__(self, outcome) -> None:
        self.records += 1
        if outcome.error:
            for row in outcome.rows:
                self.errors[row["error_reason"]] += 1
            return
        self.decided += 1
        for row in outcome.rows:
            self.lines += 1
            head = row["determination"]
            self.by["code"][row["code"]][head] += 1
            self.by["payer"][row["payer"]][head] += 1
            for rule in row["deciding_rules"] or ["(no rule: undetermined)"]:
                self.by["deciding rule"][rule][head] += 1
            for name in row["missing_fields"]:
                self.missing[name] += 1

    def render(self, title: str = "ionm-logic batch summary") -> str:
        heads = [h for h in COLOURS if any(c[h] for group in self.by.values() for c in group.values())]
        legend = "".join(f'<span class="key"><i style="background:{COLOURS[h]}"></i>{_e(h.replace("_", " "))}</span>'
                         for h in heads)
        sections = [
            ("Headlines by code", "Each billed IONM code's lines, by headline determination.",
             _stacked(self.by["code"], heads)),
            ("Headlines by payer", "Each policy pack's lines, by headline determination.",
             _stacked(self.by["payer"], heads)),
            ("Headlines by deciding rule", "Lines each rule decided (a rule whose finding is the line's headline).",
             _stacked(self.by["deciding rule"], heads)),
            ("Errors by reason", "Records that could not be decided, by field and problem.",
             _bars(self.errors, COLOURS["error"])),
            ("Most often missing documentation", "Lines whose headline would change if this field were documented.",
             _bars(self.missing, COLOURS["documentation_insufficient"])),
        ]
        body = "".join(f'<section><h2>{_e(h)}</h2><p class="note">{_e(n)}</p>{chart}</section>'
                       for h, n, chart in sections)
        return (
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{_e(title)}</title><style>{_CSS}</style></head><body>"
            f"<h1>{_e(title)}</h1><p class=\"totals\"><b>{self.records}</b> record(s): <b>{self.decided}</b> decided "
            f"(<b>{self.lines}</b> service lines), <b>{self.records - self.decided}</b> error(s).</p>"
            f"<p class=\"legend\">{legend}</p>{body}</body></html>\n")


def _e(text) -> str:
    return html.escape(str(text), quote=True)


def _order(totals: dict) -> list:
    return sorted(totals, key=lambda k: (-totals[k], str(k)))


def _more(rest: int) -> str:
    return f'<p class="note">… and {rest} more not shown.</p>' if rest > 0 else ""


def _stacked(groups: dict, heads: list) -> str:
    totals = {k: sum(c.values()) for k, c in groups.items()}
    return _chart(totals, lambda key: [(groups[key][head], COLOURS[head], f"{_e(key)}: {groups[key][head]} "
                                        f"{_e(head.replace('_', ' '))}") for head in heads if groups[key][head]],
                  label=300, clip=40, empty="Nothing to show.")


def _bars(counts: Counter, colour: str) -> str:
    return _chart(counts, lambda key: [(counts[key], colour, f"{_e(key)}: {counts[key]}")],
                  label=330, clip=48, empty="None.")


def _chart(totals: dict, segments, label: int, clip: int, empty: str) -> str:
    """One bar per key of the TOP largest `totals`: `segments(key)` gives its parts side by side,
    (count, colour, escaped title) each, and its total is written after it."""
    if not totals:
        return f'<p class="empty">{empty}</p>'
    keys = _order(totals)
    shown = keys[:TOP]
    top = max(totals.values())
    width, bar_h = 780, 22
    rows = []
    for i, key in enumerate(shown):
        y = i * (bar_h + 6)
        x = label
        parts = [f'<text x="{label - 8}" y="{y + 15}" text-anchor="end">{_e(_clip(key, clip))}</text>']
        for n, colour, title in segments(key):
            w = n / top * (width - label - 60)
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{bar_h}" fill="{colour}">'
                         f'<title>{title}</title></rect>')
            x += w
        parts.append(f'<text x="{x + 6:.1f}" y="{y + 15}" class="n">{totals[key]}</text>')
        rows.append("".join(parts))
    height = len(shown) * (bar_h + 6)
    return (f'<svg role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}">'
            + "".join(rows) + "</svg>" + _more(len(keys) - len(shown)))


def _clip(text, n: int = 32) -> str:
    text = str(text)
    return text if len(text) <= n else text[: n - 1] + "…"


_CSS = """
body{font:14px/1.4 system-ui,-apple-system,"Segoe UI",sans-serif;margin:24px auto;max-width:840px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 2px}
.note{color:#555;margin:0 0 8px}.empty{color:#777;font-style:italic}
.legend .key{display:inline-block;margin:0 14px 4px 0}.legend i{display:inline-block;width:12px;height:12px;
margin-right:5px;vertical-align:-1px}
svg text{font-size:12px;fill:#222}svg text.n{fill:#444}
"""
