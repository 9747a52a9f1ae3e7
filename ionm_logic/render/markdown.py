"""The reviewer's report as Markdown, every string escaped so that case text stays text."""
from __future__ import annotations

import re

from tabulate import tabulate

from ..explain.text import plain
from .report import build

# What Markdown (CommonMark, GFM) would read as markup inside a line: inline HTML and
# autolinks (< >), entities (&), links and images ([ ] !), emphasis (* _ ~), code (`),
# table cells (|) and the escape character itself. Line-start markup (#, -, 1.) cannot occur:
# `plain` keeps every string on one line, and each line starts with the renderer's own text.
_MARKUP = re.compile(r"([\\`*_~\[\]<>&|!])")


def md(text) -> str:
    """Any string as Markdown text: one visible line (`plain`), every markup character escaped."""
    return _MARKUP.sub(r"\\\1", plain(text))


def render(decision, detail: str = "short") -> str:
    """The reviewer's report of a Decision as Markdown."""
    return render_sections(build(decision, detail))


def render_sections(sections: list) -> str:
    out = []
    for i, (title, blocks) in enumerate(sections):
        out.append(("# " if i == 0 else "\n## ") + md(title) + "\n")
        for block in blocks:
            kind = block[0]
            if kind == "p":
                out.append(md(block[1]) + "\n")
            elif kind == "status":
                out.append(f"**{md(block[2])}**\n")
            elif kind == "h3":
                out.append(f"### {md(block[1])}\n")
            elif kind == "ul":
                out += [f"- {md(item)}" for item in block[1]] + [""]
            elif kind == "ol":
                out += [md(item) for item in block[1]] + [""]
            elif kind == "table":
                rows = [[md(c) for c in r] for r in block[1]]
                out.append(tabulate(rows, headers=block[2], tablefmt="github", disable_numparse=True) + "\n")
            elif kind == "pre":
                # A fenced block shows its text as is; no line can close it early, as every proof
                # line starts with "Proof of" or an indented "[label]".
                out += ["```"] + [plain(line) for line in block[1]] + ["```", ""]
    return "\n".join(out).rstrip() + "\n"
