"""The predicate table of rules/README.md, generated from the rules' own declarations.

Regenerate it after changing a declaration with `python -m ionm_logic.lang.docs` (it rewrites
the table between the README's markers); tests/test_docs.py fails while the table is stale.
"""
from __future__ import annotations

from pathlib import Path

BEGIN = "<!-- predicates: generated from the #pred/#case declarations by python -m ionm_logic.lang.docs -->"
END = "<!-- predicates: end -->"

# Roles in the order an author meets them: what a case gives, what decides, what is shown, the rest.
_ORDER = ("case", "finding", "consideration", "observation", "pred")
_ROLE_WORDS = {"case": "case fact", "finding": "finding", "consideration": "consideration",
               "observation": "observation", "pred": "derived or table"}


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def predicate_table(decls) -> str:
    """A Markdown table of every declared predicate: its signature, role, meaning and file."""
    rows = ["| predicate | role | one fact means | declared in |", "|---|---|---|---|"]
    for decl in sorted(decls, key=lambda d: (_ORDER.index(d.role) if d.role in _ORDER else len(_ORDER), d.name)):
        signature = f"`{decl.name}({', '.join(decl.params)})`"
        rows.append(f"| {signature} | {_ROLE_WORDS.get(decl.role, decl.role)} | {_cell(decl.template)} | "
                    f"`{decl.file}` |")
    return "\n".join(rows) + "\n"


def with_table(readme: str, table: str) -> str:
    """The README text with its generated table replaced by `table`."""
    head, rest = readme.split(BEGIN, 1)
    _old, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def shipped_decls(rules_dir: Path) -> list:
    """The declarations of every rule file under a folder, shown as rules/<file>."""
    from .parse import parse_text

    decls = []
    for path in sorted(rules_dir.rglob("*.dl")):
        rel = path.relative_to(rules_dir).as_posix()
        decls += parse_text(path.read_text(encoding="utf-8"), f"rules/{rel}").decls
    return decls


def main() -> None:  # pragma: no cover - a maintainer's command, checked through test_docs
    rules_dir = Path(__file__).resolve().parent.parent.parent / "rules"
    readme = rules_dir / "README.md"
    readme.write_text(with_table(readme.read_text(encoding="utf-8"), predicate_table(shipped_decls(rules_dir))),
                      encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    main()
