"""The docs stay true: every command has help, and the README's example runs."""
import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from conftest import ROOT
from ionm_logic.cli import main

COMMANDS = sorted(main.commands)


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command):
    out = CliRunner().invoke(main, [command, "--help"])
    assert out.exit_code == 0
    assert main.commands[command].help and "Usage:" in out.output


def test_readme_opens_with_install_and_test_commands():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    assert "pip install" in blocks[0] and "ionm-logic explain examples/" in blocks[0]
    assert "pytest" in blocks[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q" in blocks[1] and "python -m pytest -q" in ci


def test_readme_example_runs():
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    explain = blocks[0].split("&&")[-1].split()
    assert explain[:2] == ["ionm-logic", "explain"]
    out = subprocess.run([sys.executable, "-m", "ionm_logic", *explain[1:]], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0 and "Final Determination" in out.stdout


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "ionm_logic", "--help"], capture_output=True, text=True)
    assert out.returncode == 0 and "explain" in out.stdout


def _walkthrough():
    text = (ROOT / "rules" / "README.md").read_text()
    steps = []
    for info, body in re.findall(r"```([^\n]*)\n(.*?)```", text, re.S):
        match = re.search(r"file=(\S+)", info)
        if match:
            steps.append(("file", match.group(1), body))
        elif info.strip() == "console":
            command, expected = None, []
            for line in body.splitlines():
                if line.startswith("$ "):
                    if command:
                        steps.append(("run", command, expected))
                    command, expected = line[2:], []
                elif line.strip():
                    expected.append(line)
            if command:
                steps.append(("run", command, expected))
    return steps


def test_the_authoring_walkthrough_runs_as_written(tmp_path):
    import shlex

    steps = _walkthrough()
    assert sum(kind == "run" for kind, *_ in steps) >= 5 and sum(kind == "file" for kind, *_ in steps) >= 4
    for kind, what, payload in steps:
        if kind == "file":
            path = tmp_path / what
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(payload)
            continue
        argv = shlex.split(what)
        assert argv[0] == "ionm-logic"
        out = subprocess.run([sys.executable, "-m", "ionm_logic", *argv[1:]], cwd=tmp_path,
                             capture_output=True, text=True)
        assert out.returncode == 0, f"{what}\n{out.stdout}\n{out.stderr}"
        seen = " ".join((out.stdout + out.stderr).split())
        for line in payload:
            assert " ".join(line.split()) in seen, f"{what}: expected {line!r}"


def test_readme_proof_excerpt_is_what_explain_prints():
    readme = (ROOT / "README.md").read_text()
    excerpt = readme.split("is not medically necessary because:\n\n```\n", 1)[1].split("```", 1)[0]
    out = subprocess.run([sys.executable, "-m", "ionm_logic", "explain", "examples/alif-plif-l5-s1.json",
                          "--detail", "full"], cwd=ROOT, capture_output=True, text=True).stdout
    printed = "\n".join(line[4:] for line in out.splitlines())
    assert excerpt.strip() in printed


def test_the_predicate_table_in_the_rule_authors_guide_is_generated_from_the_declarations():
    # The table an author reads to know what a rule body may use: every declared predicate, its
    # signature and sentence, exactly as `python -m ionm_logic.lang.docs` writes it.
    from ionm_logic.api import rule_set
    from ionm_logic.lang.docs import BEGIN, END, predicate_table

    readme = (ROOT / "rules" / "README.md").read_text()
    shown = readme.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"
    decls = list(rule_set().decls.values())
    assert shown == predicate_table(decls), "stale: run python -m ionm_logic.lang.docs"
    for decl in decls:
        assert f"`{decl.name}({', '.join(decl.params)})`" in shown
