"""Golden files as a rule author writes them, mistakes included (tests/fixtures/golden/): every
misspelt key is an error, each case stands alone, a file is read once however often it is
named, and `test`'s exit status says which outcome it was (0 passed, 3 not all passed)."""
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from ionm_logic.cli import main

FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = FIXTURES / "golden"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IONM_LOGIC_CACHE", str(tmp_path / "cache"))


def run_test(*args):
    out = CliRunner().invoke(main, ["test", *map(str, args)])
    assert out.exception is None or isinstance(out.exception, SystemExit), out.output
    assert "internal error" not in out.output and "Traceback" not in out.output
    return out


def test_a_misspelt_key_and_a_missing_case_file_fail_their_own_cases_only():
    path = GOLDEN / "a-misspelt-key-and-a-missing-case-file.yaml"
    out = run_test(path)
    assert out.exit_code == 3
    assert (f"ERROR {path}: A misspelt key is an error, not a pass: expect/lines/0: unknown key 'determinaton' "
            "(did you mean determination?)") in out.output
    assert f"ERROR {path}: A missing case file fails this case only: cannot read case file no-such-case.json" \
        in out.output
    # The third case of the file ran and passed, as did the shipped cases: only the two fail.
    assert "The sound case beside them" not in out.output
    assert out.output.rstrip().endswith(" passed, 2 failed")


def test_a_golden_file_that_is_not_utf8_is_an_error_of_that_file_and_the_others_run():
    path = GOLDEN / "a-golden-file-that-is-not-utf-8.yaml"
    out = run_test(path)
    assert out.exit_code == 3
    assert f"ERROR {path}: not UTF-8 text" in out.output
    passed = int(out.output.rstrip().rsplit("\n", 1)[-1].split()[0])
    assert passed > 0 and out.output.rstrip().endswith(" passed, 1 failed")


def test_a_tests_folder_named_twice_runs_once(tmp_path):
    rules = tmp_path / "mine"
    (rules / "tests").mkdir(parents=True)
    (rules / "mine.dl").write_text("% an author's folder with no rules yet, only a golden case\n")
    shutil.copy(GOLDEN / "a-misspelt-key-and-a-missing-case-file.yaml", rules / "tests" / "cases.yaml")
    (rules / "tests" / "cases.yaml").write_text((rules / "tests" / "cases.yaml").read_text()
                                                .replace("../../../examples", str(Path(__file__).parent.parent / "examples")))
    once = run_test("--rules", rules)
    twice = run_test("--rules", rules, rules / "tests", rules / "tests" / "cases.yaml")
    assert once.output == twice.output
    assert twice.output.count("A misspelt key is an error") == 1


def test_every_golden_case_passing_exits_0_and_the_statuses_are_documented():
    assert run_test().exit_code == 0
    help_text = " ".join(CliRunner().invoke(main, ["test", "--help"]).output.split())
    assert "0 every golden case passed; 3 a case failed" in help_text and "1 internal error" in help_text
    readme = " ".join((Path(__file__).parent.parent / "README.md").read_text().split())
    assert "`test` exits 3 when golden cases did not all pass" in readme
