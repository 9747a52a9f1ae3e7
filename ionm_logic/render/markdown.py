"""The reviewer's report as Markdown."""
from __future__ import annotations

from tabulate import tabulate

from .report import build


def render(decision, detail: str = "short") -> str:
    """The reviewer's report of a Decision as Markdown."""
    return render_sections(build(decision, detail))


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|")


def render_sections(sections: list) -> str:
    out = []
    for i, (title, blocks) in enumerate(sections):
        out.append(("# " if i == 0 else "\n## ") + title + "\n")
        for block in blocks:
            kind = block[0]
            if kind == "p":
                out.append(block[1] + "\n")
            elif kind == "h3":
                out.append(f"### {block[1]}\n")
            elif kind == "ul":
                out += [f"- {item}" for item in block[1]] + [""]
            elif kind == "ol":
                out += block[1] + [""]
            elif kind == "table":
                rows = [[_md_escape(str(c)) for c in r] for r in block[1]]
                out.append(tabulate(rows, headers=block[2], tablefmt="github") + "\n")
            elif kind == "pre":
                out += ["```"] + block[1] + ["```", ""]
    return "\n".join(out).rstrip() + "\n"
