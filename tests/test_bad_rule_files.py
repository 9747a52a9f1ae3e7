"""Bad rule files, kept as files under tests/fixtures/bad-rules/: each names, in its second
line (`% expect: LINE[:COLUMN]: words`), where the error is and what it must say. The error
speaks the rule language's words (quoted spellings, "a quoted string"), never a parser
library's internal terminal names."""
import re
from pathlib import Path

import pytest

from ionm_logic.lang.checks import check_files
from ionm_logic.lang.objects import RuleError
from ionm_logic.lang.parse import parse_text

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "bad-rules").glob("*.dl"))
EXPECT = re.compile(r"^% expect: (\d+)(?::(\d+))?: (.+)$", re.M)


def expectation(path: Path) -> tuple:
    match = EXPECT.search(path.read_text())
    assert match, f"{path.name} states no '% expect:' line"
    return int(match.group(1)), int(match.group(2)) if match.group(2) else None, match.group(3)


def error_of(path: Path):
    """(line, column or None, message) of the first error the file gives; its printed form
    starts with the file's name and the place."""
    name = f"rules/{path.name}"
    try:
        rf = parse_text(path.read_text(), name)
    except RuleError as exc:
        assert str(exc).startswith(f"{name}:{exc.line}" + (f":{exc.column}" if exc.column else "") + ": ")
        return exc.line, exc.column, exc.message
    errors = [p for p in check_files([rf]) if p.level == "error"]
    assert errors, f"{path.name} gives no error"
    assert str(errors[0]).startswith(f"{name}:{errors[0].line}: error: ")
    return errors[0].line, None, errors[0].message


def test_there_are_bad_rule_fixtures():
    assert len(FIXTURES) >= 8


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_bad_rule_file_is_reported_where_and_as_its_fixture_says(path):
    line, column, words = expectation(path)
    got_line, got_column, message = error_of(path)
    assert (got_line, got_column) == (line, column)
    assert words in message


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_errors_never_name_the_parser_librarys_terminals(path):
    message = error_of(path)[2]
    assert "__ANON" not in message
    assert not re.search(r"\b(LPAR|RPAR|DOT|COMMA|VBAR|COLON|LBRACE|RBRACE|NOT|NAME|VARIABLE|STRING|INT|KEY|"
                         r"RULE_ID|OP|DECL_ROLE|\$END)\b", message)
