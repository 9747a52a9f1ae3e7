"""Hostile and careless rule folders, kept as files under tests/fixtures/rules/: each is reported
by `check` as an error at the place its author must fix (exit 2), never passed in silence,
never an internal error, and never blamed on another file."""
import hashlib
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import REFERENCE
from ionm_logic.cli import main

FIXTURES = Path(__file__).parent / "fixtures" / "rules"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IONM_LOGIC_CACHE", str(tmp_path / "cache"))


def check(*folders):
    out = CliRunner().invoke(main, ["check", *[a for f in folders for a in ("--rules", str(f))]])
    assert "internal error" not in out.output and out.exception is None or isinstance(out.exception, SystemExit)
    return out.exit_code, out.output


# (fixture folder, file, line, words the error must say). The reasoning is each fixture's banner.
ERRORS = [
    ("a-finding-rule-without-its-pack-gate", "ungated.dl", 9, "is not gated to a pack"),
    ("a-shared-finding-whose-pack-variable-switches-nothing", "shared.dl", 9, "is not gated to a pack"),
    ("a-pack-switch-naming-a-pack-nobody-declares", "switch.dl", 7,
     "pack_requires_real_time switches rules on for pack 'comercial-reference', which no policy_pack declares"),
    ("a-gate-naming-a-pack-nobody-declares", "typo.dl", 9, "names pack 'comercial-reference', which no policy_pack declares"),
    ("a-gate-naming-a-version-the-pack-does-not-declare", "typo.dl", 9,
     "names version '2020-13-01' of commercial-reference, which declares no such version (declared: 2020-01-01)"),
    # The '.' belongs after line 7's last token: the error is there, in words, not at line 12's '@rule'.
    ("a-clause-missing-its-period-before-the-next-rule", "a-declares.dl", 7,
     "the clause ends here without its final '.' (the next clause starts at line 12)"),
    ("a-rule-id-the-shipped-rules-already-use", "reused.dl", 8,
     "rule id PACK-CORD-PATHWAY-ABSENT is already the id of the rule at rules/pack-logic.dl:{shipped_line}"),
    ("a-rule-file-that-is-not-utf-8", "latin1.dl", 4, "not UTF-8 text: byte 0xe9"),
    ("a-rule-file-with-a-nul-character", "nul.dl", 4, "a NUL character"),
    ("an-integer-of-5000-digits", "big.dl", 6, "has 5000 digits; the limit is 18"),
    # 500 steps: the chain crosses the limit of 100 at CHAIN-99 (chain_step_0 rests on a case fact).
    ("a-chain-of-500-rules", "chain.dl", 907, "CHAIN-99: chain_step_99 is derived through a chain of more than 100"),
    ("a-symmetric-and-transitive-predicate", "linked.dl", 20,
     "LINKED-TRANSITIVE uses its own recursive predicate (levels_linked) twice in its body, beside the recursive "
     "rule(s) LINKED-SYMMETRIC"),
]


@pytest.mark.parametrize("folder, file, line, words", ERRORS, ids=[e[0] for e in ERRORS])
def test_check_reports_the_hostile_folder_where_its_author_must_fix_it(folder, file, line, words):
    status, output = check(FIXTURES / folder)
    assert status == 2, output
    errors = [l for l in output.splitlines() if ": error: " in l]
    # One error, in the fixture's own file: nothing cascades into other files or the shipped rules.
    assert len(errors) == 1, output
    assert errors[0].startswith(f"{FIXTURES / folder / file}:{line}: error: "), output
    if "{shipped_line}" in words:  # where the shipped rule is today
        from ionm_logic.api import rule_set

        words = words.format(shipped_line=rule_set().rules_by_id["PACK-CORD-PATHWAY-ABSENT"].line)
    assert words in errors[0]
    assert "__ANON" not in output and "anon" not in output.lower()


def test_a_rule_file_with_another_extension_is_named_and_a_folder_without_rules_is_an_error():
    status, output = check(FIXTURES / "a-rule-file-with-another-extension")
    assert status == 2
    assert f"{FIXTURES / 'a-rule-file-with-another-extension' / 'emg.pl'}: warning: not read: rule files end in .dl" \
        in output
    assert f"{FIXTURES / 'a-rule-file-with-another-extension'}: error: no rule file (.dl) in this folder" in output
    status, output = check(FIXTURES / "a-folder-with-no-rule-file")
    assert status == 2 and "error: no rule file (.dl) in this folder" in output
    assert "0 error(s)" not in output


def test_an_upper_case_rule_suffix_is_named_beside_the_files_that_are_read(tmp_path):
    (tmp_path / "mine.dl").write_text("% a rule file with nothing in it yet\n")
    (tmp_path / "SHOUTED.DL").write_text("% never read\n")
    status, output = check(tmp_path)
    assert status == 0
    assert f"{tmp_path / 'SHOUTED.DL'}: warning: not read: rule files end in .dl (this one ends in .DL)" in output


def test_an_unreadable_rule_file_is_an_input_error_naming_it(tmp_path):
    bad = tmp_path / "secret.dl"
    if os.getuid() == 0:  # root reads any mode: a file whose read fails with EIO does it
        bad.symlink_to("/proc/self/mem")
    else:
        bad.write_text("% unreadable\n")
        bad.chmod(0)
    status, output = check(tmp_path)
    assert status == 2
    assert f"{bad}: error: cannot read the file" in output


def test_a_user_predicate_named_like_an_engine_internal_stays_the_users():
    # case_witness_2 has the arity of the engine's commercial-reference union, frozen_time_line
    # the arity of time_line; before, the first crashed every case of the pack (internal error).
    folder = FIXTURES / "user-predicates-named-like-engine-internals"
    assert check(folder)[0] == 0
    runner = CliRunner()
    plain = runner.invoke(main, ["explain", str(REFERENCE), "--format", "json"])
    named = runner.invoke(main, ["explain", str(REFERENCE), "--format", "json", "--rules", str(folder)])
    assert plain.exit_code == 0 and named.exit_code == 0, named.output
    plain_lines, named_lines = json.loads(plain.output)["lines"], json.loads(named.output)["lines"]
    for before, after in zip(plain_lines, named_lines):
        extra = [c["rule"] for c in after["considerations"] if c["rule"].startswith("NAMES-")]
        # The author's consideration is on the EMG line only, and changes nothing else: the same
        # findings, headlines and missing documentation as without the folder.
        assert extra == (["NAMES-CONSIDERATION"] if before["code"] == "95861" else [])
        assert after["findings"] == before["findings"]
        assert after["determination"] == before["determination"]
        assert after["missing_documentation"] == before["missing_documentation"]


def test_a_variable_spelled_like_the_anonymous_ones_is_refused(tmp_path):
    (tmp_path / "anon.dl").write_text("#pred my_p(Case) :: '@(Case) is p'.\nmy_p(_Anon1).\n")
    status, output = check(tmp_path)
    assert status == 2 and "variable _Anon1: names starting with '_' are reserved" in output


def test_the_rule_set_digest_frames_names_and_texts_by_length():
    # The old digest hashed name\0text\0...: a one-file folder whose text held "\0b.dl\0..."
    # got the digest of a two-file folder. Length prefixes make the split part of the digest.
    from ionm_logic.engine import ruleset

    def digest(*parts):
        h = hashlib.sha256()
        ruleset._frame(h, *parts)
        return h.digest()

    assert digest(b"x/a.dl", b"T1\0x/b.dl\0T2") != digest(b"x/a.dl", b"T1", b"x/b.dl", b"T2")
    assert digest(b"ab", b"c") != digest(b"a", b"bc")
