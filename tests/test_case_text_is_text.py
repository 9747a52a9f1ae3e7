"""Case text is text in every rendering (issue 16): hostile case files (tests/fixtures/hostile/)
cannot start a line of their own, forge a verdict or a heading, steer a terminal, inject Markdown
or HTML markup, or flood a report; the JSON keeps every value whole."""
import json
import re
import subprocess
import sys

import pytest
from markdown_it import MarkdownIt

from conftest import ROOT

# The case files here that are valid input (the folder also holds input-error fixtures).
HOSTILE = [ROOT / "tests" / "fixtures" / "hostile" / f"{name}.json" for name in (
    "newlines-forge-a-medically-necessary-verdict", "markdown-and-html-carry-script-image-and-javascript-links",
    "terminal-escapes-clear-the-screen-retitle-and-reverse-text", "over-long-values-as-long-as-input-limits-allow")]
FORGED = ROOT / "tests" / "fixtures" / "hostile" / "newlines-forge-a-medically-necessary-verdict.json"
MARKUP = ROOT / "tests" / "fixtures" / "hostile" / "markdown-and-html-carry-script-image-and-javascript-links.json"
ESCAPES = ROOT / "tests" / "fixtures" / "hostile" / "terminal-escapes-clear-the-screen-retitle-and-reverse-text.json"
LONG = ROOT / "tests" / "fixtures" / "hostile" / "over-long-values-as-long-as-input-limits-allow.json"
# Anything but a newline that would act instead of show: C0/C1 controls (ESC opens CSI and OSC
# sequences, U+009B is CSI), DEL, line/paragraph separators, bidi overrides and isolates.
ACTING = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def explain(path, *args) -> str:
    out = subprocess.run([sys.executable, "-m", "ionm_logic", "explain", str(path), *args],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def renderings(path):
    code = json.loads(path.read_text())["services"][0]["code"]
    yield "text", explain(path)
    yield "text full", explain(path, "--detail", "full")
    yield "markdown", explain(path, "--format", "markdown")
    yield "markdown full", explain(path, "--format", "markdown", "--detail", "full")
    yield "html", explain(path, "--format", "html")
    yield "dot", explain(path, "--format", "dot")
    yield "why-not", explain(path, "--why-not", f"{code}=medically_necessary")
    out = subprocess.run([sys.executable, "-m", "ionm_logic", "diff", str(path), "--payer", "commercial-reference",
                          "--payer", "anthem-cg-surg-104"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    yield "diff", out.stdout


@pytest.mark.parametrize("path", HOSTILE, ids=[p.stem for p in HOSTILE])
def test_no_rendering_carries_a_control_character_or_escape_sequence(path):
    for fmt, out in renderings(path):
        found = ACTING.search(out)
        assert found is None, f"{fmt}: {found.group()!r} at {out[max(0, found.start() - 40):found.end() + 40]!r}"


def test_a_newline_in_case_text_cannot_forge_a_final_determination():
    # The case is the reference case (not medically necessary, domain.md §1) with newlines that
    # try to write "# Final Determination" and "Final determination: MEDICALLY NECESSARY." lines.
    text = explain(FORGED)
    finals = [line for line in text.splitlines() if line.startswith("Final determination:")]
    assert len(finals) == 1 and finals[0].startswith("Final determination: NOT MEDICALLY NECESSARY.")
    assert text.splitlines().count("Final Determination") == 1
    assert not any(line.startswith("# ") for line in text.splitlines())
    tokens = MarkdownIt().parse(explain(FORGED, "--format", "markdown"))
    headings = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "heading_open"]
    assert headings.count("Final Determination") == 1 and [t.tag for t in tokens if t.type == "heading_open"].count("h1") == 1
    assert "References" in headings and headings.count("References") == 1
    paragraphs = [tokens[i + 1].content for i, t in enumerate(tokens) if t.type == "paragraph_open"]
    assert not any(p.startswith("Final determination: MEDICALLY") for p in paragraphs)


def test_markdown_rendered_by_an_ordinary_library_has_no_script_image_or_javascript_link():
    # markdown-it's default (CommonMark) passes raw HTML through: only escaping keeps it text.
    page = MarkdownIt().render(explain(MARKUP, "--format", "markdown"))
    assert "<script" not in page and "<img" not in page
    assert not re.search(r"href=\"\s*javascript:", page, re.I)
    assert "&lt;script&gt;window.__pwned = 3&lt;/script&gt;" in page, "the text is shown, not dropped"
    assert "<strong>bold</strong>" not in page and "<em>em</em>" not in page and "<code>code</code>" not in page


def test_the_escaped_case_text_still_reads_as_written():
    # Escaping shows the value: the description and an unknown code read back in the rendered
    # Markdown exactly as the case wrote them (one line each, nothing dropped).
    doc = json.loads(MARKUP.read_text())
    page = MarkdownIt().render(explain(MARKUP, "--format", "markdown"))
    import html

    shown = html.unescape(re.sub(r"<[^>]+>", "", page))
    assert "<img src=x onerror=window.__pwned=7>" in shown
    assert doc["procedure"]["description"][:60] in shown


def test_terminal_escapes_are_shown_not_obeyed():
    text = explain(ESCAPES)
    assert "\x1b" not in text and "\x9b" not in text
    assert "\\x1b[2J" in text and "\\x1b]0;owned\\x07" in text, "the sequence is shown visibly"
    assert "\\u202e" in text, "a bidi override is shown, not applied"


def test_over_long_values_are_shortened_in_prose_and_whole_in_json():
    # The case id and the description are as long as the input limits allow (200 and more
    # characters), past the 80 that prose shows of a value.
    doc = json.loads(LONG.read_text())
    long_code = doc["services"][-1]["code"]
    for fmt, out in renderings(LONG):
        if fmt == "dot":
            continue  # the graph labels atoms; it is not prose
        assert doc["procedure"]["description"] not in out, fmt
        assert doc["case_id"] not in out, fmt
        if fmt != "html":  # a page puts a whole list on one source line
            assert max(len(line) for line in out.splitlines()) < 4000, fmt
    result = json.loads(explain(LONG, "--format", "json"))
    assert result["case_id"] == doc["case_id"] and result["lines"][-1]["code"] == long_code


def test_query_answers_and_their_proofs_show_case_text_as_text():
    out = subprocess.run([sys.executable, "-m", "ionm_logic", "query", "billed_line(case, Line, Code)", "--case",
                          str(ESCAPES), "--why"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert ACTING.search(out.stdout) is None
    assert "95\\x1b[8m99\\x1b[0m9" in out.stdout


def test_a_reference_marker_in_case_text_links_nowhere():
    # An unknown code spelled "[2]" is case text: in the HTML page it must not become a link to
    # reference 2 as the report's own markers do.
    doc = json.loads((ROOT / "examples" / "alif-plif-l5-s1.json").read_text())
    doc["services"].append({"code": "[2]", "units": 1})
    out = subprocess.run([sys.executable, "-m", "ionm_logic", "explain", "-", "--format", "html"],
                         input=json.dumps(doc), capture_output=True, text=True)
    items = [li for li in re.findall(r"<li>(.*?)</li>", out.stdout) if "code [2] is not a code" in li]
    assert items and all('href="#ref-2"' not in li for li in items)
