"""Every pack rule sits under the quoted clause it encodes (issue 10): a policy analyst reads the
pack like the policy."""
from pathlib import Path

from ionm_logic.engine import shipped_rules_dir


def _comment_above(lines: list, index: int) -> str:
    """The comment block right above line `index` (0-based), skipping the rule's @ annotations."""
    k = index - 1
    while k >= 0 and lines[k].startswith("@"):
        k -= 1
    block = []
    while k >= 0 and lines[k].startswith("%"):
        block.append(lines[k])
        k -= 1
    return "\n".join(reversed(block))


def test_every_pack_rule_is_under_a_quoted_clause(kb):
    packs = shipped_rules_dir() / "packs"
    unquoted = []
    for path in sorted(packs.glob("*.dl")):
        lines = path.read_text(encoding="utf-8").splitlines()
        for k, text in enumerate(lines):
            if text.startswith("@rule "):
                comment = _comment_above(lines, k + 1)
                if comment.count('"') < 2:
                    unquoted.append(f"{path.name}:{k + 1} {text}")
    assert len([r for r in kb.rules if r.file.startswith("rules/packs/")]) >= 40
    assert unquoted == []


def test_every_pack_file_says_what_it_does_not_encode():
    for path in sorted((shipped_rules_dir() / "packs").glob("*.dl")):
        banner = path.read_text(encoding="utf-8").split("% ====")[1]
        assert "Not encoded:" in banner, path.name
