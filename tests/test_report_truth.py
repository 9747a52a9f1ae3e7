"""Every word a report prints is true (issue 12, reviewer): the headline's bullets, undetermined
lines, the date that decided, the sentences themselves, and why-not's order and wording."""
import json
import re

import pytest
from click.testing import CliRunner

from conftest import ROOT, reference_case
from ionm_logic.cli import main

EXAMPLES = sorted((ROOT / "examples").glob("*.json"))
PAYERS = ("commercial-reference", "anthem-cg-surg-104", "cms-lcd-l34623")
PAIRS = [(e, p) for e in EXAMPLES for p in PAYERS]


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def explain_pair(example, payer, *extra):
    text = run("explain", example, "--payer", payer, *extra)
    if text.exit_code == 2 and not extra:  # no version of the pack in force on the case's date:
        extra = ("--as-of", "2024-06-01")   # decide under the version in force in mid-2024
        text = run("explain", example, "--payer", payer, *extra)
    assert text.exit_code == 0, text.output
    doc = json.loads(run("explain", example, "--payer", payer, "--format", "json", *extra).output)
    return text.output, doc


def headline(text: str) -> list:
    """The bullets right under the lead paragraph: (codes, sentence)."""
    lines = text.split("\n\n", 1)[0].splitlines()[3:]
    bullets = [l[2:] for l in lines if l.startswith("- ")]
    return [tuple(re.match(r"(.*?): (.*) ?(\[[\d, ]+\])?$", b).group(1, 2)) for b in bullets]


def label_of(doc, line) -> str:
    codes = [l["code"] for l in doc["lines"]]
    n = doc["lines"].index(line) + 1
    return f"{line['code']} (line {n})" if codes.count(line["code"]) > 1 else line["code"]


def strip_marks(sentence: str) -> str:
    return re.sub(r" \[[\d, ]+\]$", "", sentence).rstrip(".")


@pytest.mark.parametrize("example, payer", PAIRS, ids=[f"{e.stem}-{p}" for e, p in PAIRS])
def test_every_headline_bullet_is_true_of_every_line_it_names(example, payer):
    # A bullet names lines and says one sentence: that sentence must be, word for word, the
    # sentence of a finding that decided each named line's headline (or its undetermined
    # reason). Before, lines were grouped under the first line's sentence: "95938, 95939: SSEP
    # monitors the spinal cord" was said of the MEP line.
    text, doc = explain_pair(example, payer)
    by_label = {label_of(doc, line): line for line in doc["lines"]}
    named = []
    for codes, sentence in headline(text):
        said = strip_marks(sentence).lower()
        for label in codes.split(", "):
            line = by_label[label]
            named.append(label)
            truths = [f["text"] for f in line["findings"] if f["determination"] == line["determination"]] \
                or [line.get("reason", "")]
            assert said in [strip_marks(t).lower() for t in truths], (label, sentence)
    assert set(named) == set(by_label), "every line, undetermined ones too, is in the headline"


def test_a_code_billed_twice_is_one_bullet_per_line():
    doc = reference_case()
    doc["services"].append({"code": "95938", "units": 2})
    result = CliRunner().invoke(main, ["explain", "-"], input=json.dumps(doc))
    bullets = headline(result.output)
    ssep = [codes for codes, _s in bullets if "95938" in codes]
    assert ssep == ["95938 (line 1)", "95938 (line 7)"]


@pytest.mark.parametrize("example, payer", [(ROOT / "examples" / "peripheral-nerve-decompression.json",
                                              "commercial-reference"),
                                             (ROOT / "examples" / "thoracoabdominal-aortic-repair.json",
                                              "commercial-reference")])
def test_a_case_with_undetermined_lines_says_so_in_its_verdict(example, payer):
    # domain.md: the commercial policy has no clause for these modalities in this surgery, so
    # the monitoring lines are undetermined and only the time line is decided (not medically
    # necessary). Calling the case plainly NOT MEDICALLY NECESSARY would hide what no rule decided.
    text, doc = explain_pair(example, payer)
    assert doc["overall"]["determination"] == "not_medically_necessary"
    undetermined = [l["code"] for l in doc["lines"] if l["determination"] == "undetermined"]
    assert len(undetermined) >= 2
    lead = text.splitlines()[2]
    final = text.split("\nFinal Determination\n")[1].splitlines()[1]
    for said in (lead, final):
        assert "UNDETERMINED" in said and all(code in said for code in undetermined), said


def test_the_report_says_which_date_decided_under_as_of():
    # The ACDF case is dated 2024-03-04; under L34623 --as-of 2020-01-01 picks version
    # 2015-10-01. The report must say the --as-of date decided, not print the date of service
    # beside a version not in force on it as if that date had decided.
    example = ROOT / "examples" / "c5-c6-acdf-myelopathy-in-room.json"
    text, doc = explain_pair(example, "cms-lcd-l34623", "--as-of", "2020-01-01")
    assert doc["policy"]["version"] == "2015-10-01"
    case_line = next(l for l in text.splitlines() if l.startswith("Case "))
    assert "2020-01-01" in case_line and "--as-of" in case_line
    assert case_line.index("2020-01-01") < case_line.index("2024-03-04")
    plain, _doc = explain_pair(example, "cms-lcd-l34623")
    assert "--as-of" not in plain


@pytest.mark.parametrize("example, payer", PAIRS, ids=[f"{e.stem}-{p}" for e, p in PAIRS])
def test_sentences_read_as_prose(example, payer):
    text, _doc = explain_pair(example, payer)
    prose = text.split("\nReferences\n")[0]
    # No JSON pointer in prose: lines are named by number and code.
    assert "/services/" not in prose
    # A capital only where a sentence opens: after "IONM during", and after a label's colon.
    lead = text.splitlines()[2]
    assert not re.match(r"IONM during [A-Z][a-z]+\b", lead), lead
    items = [l[2:] for l in prose.splitlines() if l.startswith("- ")]
    for item in items:
        # One label per item ("Consideration: Limited exception: ..." had two).
        assert not re.match(r"[A-Z][\w ()-]*: [A-Za-z]+( [a-z]+)?: ", item), item
        # "Not medically necessary: The policy..." capitalised a word inside the sentence.
        label = re.match(r"(Not medically necessary|Medically necessary|Insufficient evidence \(unproven\)|"
                         r"Not separately reimbursable|Requirements not met|Documentation insufficient|"
                         r"Consideration|Missing documentation): (\w+)", item)
        if label:
            word = label.group(2)
            assert not re.fullmatch(r"[A-Z][a-z]+", word), item
    # The summary table speaks in words, not snake_case values.
    table = text.split("\nSummary\n")[1].split("\nAnalysis by Code\n")[0]
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", table), table
    # One term for the monitoring professional, as design.md names it.
    assert "interpreting physician" not in text


def test_no_rule_template_or_question_says_interpreting_physician():
    from ionm_logic.case import DOCUMENTABLE

    texts = [d.question for d in DOCUMENTABLE]
    texts += [p.read_text() for p in (ROOT / "rules").rglob("*.dl")]
    assert not any("interpreting physician" in t for t in texts)


def why_not(target, doc=None):
    doc = doc or reference_case()
    out = CliRunner().invoke(main, ["explain", "-", "--why-not", target, "--format", "json"], input=json.dumps(doc))
    assert out.exit_code == 0, out.output
    text = CliRunner().invoke(main, ["explain", "-", "--why-not", target], input=json.dumps(doc)).output
    return json.loads(out.output), text


def walk_satisfiers(items):
    for s in items:
        yield s
        if s.get("miss"):
            yield from walk_satisfiers(s["miss"]["would_satisfy"])


@pytest.mark.parametrize("target", ["95938=medically_necessary", "95941=medically_necessary",
                                    "95941=requirements_not_met", "95861=medically_necessary"])
def test_why_not_lists_the_nearest_misses_first_and_offers_nothing_already_true(kb, target):
    report, text = why_not(target)
    misses = [r for r in report["rules"] if not r["holds"]]
    depth = [r["fails_at"] for r in misses]
    assert depth == sorted(depth, reverse=True), "the rules that got furthest come first"
    if target.startswith("95938"):
        # The SSEP line is no time line: the time-line rule (CR-P5-...) misses at its first
        # literals and must not lead.
        assert not report["rules"][0]["rule"].startswith("CR-P5")
    from ionm_logic.lang import render_atom

    stated = {render_atom(pred, values) for pred, values in kb.fact_index}
    for r in misses:
        for s in walk_satisfiers(r["would_satisfy"]):
            if s["kind"] == "fact":
                assert s["atom"] not in stated, f"{s['atom']} already holds"
            if s["kind"] == "rule":
                gate = kb.ruleset.gate(kb.rules_by_id[s["rule"]])
                assert gate in (None, report["policy"]["id"]), f"{s['rule']} belongs to {gate}"


def test_why_not_english_has_no_variable_names(kb):
    # "service line /services/0 bills code Code for professional time" leaked the rule's
    # variable Code into a sentence; unknown values read "some code".
    from ionm_logic.lang.objects import SLOT

    report, text = why_not("95938=medically_necessary")
    variables = {name for rule in kb.rules for name in SLOT.findall(rule.template)}
    variables |= {name for decl in kb.decls.values() for name in SLOT.findall(decl.template)}
    english = [l.split("): ", 1)[1] for l in text.splitlines() if "would hold if" in l and "): " in l]
    english += [l.split("would hold if the case file recorded that ", 1)[1] for l in text.splitlines()
                if "recorded that" in l]
    assert english
    for sentence in english:
        words = set(re.findall(r"\b[A-Z][A-Za-z]*\b", sentence))
        assert not (words & variables) - {"SSEP", "MEP", "EEG", "EMG", "BAEP", "L1", "L5"}, sentence
