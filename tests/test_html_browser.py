"""The HTML report in a real headless browser: it loads without console errors, a proof tree
expands on click, a reference link lands on its entry, and a screenshot is taken."""
import os
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]

if CHROMIUM is None:
    message = ("cannot run the browser test: no chromium on this machine "
               "(.ci/run installs Debian's chromium; locally: apt-get install chromium)")
    if os.environ.get("CI"):
        raise RuntimeError(message)  # in CI a missing browser is a failure, not a skip
    pytest.skip(message, allow_module_level=True)

sync_api = pytest.importorskip("playwright.sync_api", reason="cannot run the browser test: pip install '.[test]'")


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    html = subprocess.run([sys.executable, "-m", "ionm_logic", "explain", str(ROOT / "examples" / "alif-plif-l5-s1.json"),
                           "--format", "html"], capture_output=True, text=True, check=True).stdout
    path = tmp_path_factory.mktemp("html") / "report.html"
    path.write_text(html, encoding="utf-8")
    return path


def test_report_loads_expands_links_and_screenshots(page_file, tmp_path):
    problems = []
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
        page.on("pageerror", lambda err: problems.append(str(err)))
        page.goto(page_file.as_uri())
        assert page.title().startswith("Medical Necessity Determination")
        proof = page.locator("details.proof").first
        assert proof.get_attribute("open") is None
        proof.locator("summary").first.click()
        assert proof.get_attribute("open") is not None
        assert proof.locator(".node.rule").first.is_visible()
        page.locator("a.ref").first.click()
        assert page.evaluate("location.hash").startswith("#ref-")
        shot = tmp_path / "report.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert problems == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def _explain(path, *args) -> str:
    return subprocess.run([sys.executable, "-m", "ionm_logic", "explain", str(path), *args],
                          capture_output=True, text=True, check=True).stdout


HOSTILE_MARKUP = ROOT / "tests" / "fixtures" / "hostile" / "markdown-and-html-carry-script-image-and-javascript-links.json"


def test_hostile_case_text_runs_no_script_in_markdown_or_html(tmp_path):
    """The Markdown report, rendered by an ordinary Markdown library (markdown-it passes raw
    HTML), and the HTML report of a case whose text carries <script>, <img onerror> and
    javascript: links: opened in chromium, no script of the case runs (window.__pwned stays
    unset), and clicking every link goes nowhere outside the page."""
    from markdown_it import MarkdownIt

    pages = {
        "markdown.html": "<!DOCTYPE html><meta charset='utf-8'><body>"
                         + MarkdownIt().render(_explain(HOSTILE_MARKUP, "--format", "markdown")) + "</body>",
        "report.html": _explain(HOSTILE_MARKUP, "--format", "html"),
    }
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        for name, text in pages.items():
            path = tmp_path / name
            path.write_text(text, encoding="utf-8")
            page = browser.new_page()
            dialogs = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(path.as_uri())
            page.wait_for_timeout(300)  # an onerror handler fires once the broken image fails
            assert page.evaluate("typeof window.__pwned") == "undefined", name
            assert page.locator("script").count() == 0 and page.locator("img").count() == 0, name
            for link in page.locator("a").all():
                assert not (link.get_attribute("href") or "").strip().lower().startswith("javascript:"), name
            assert "window.__pwned = 3" in page.inner_text("body"), f"{name}: the text is shown as text"
            assert dialogs == []
            page.close()
        browser.close()


def test_every_line_and_the_case_show_a_labelled_status_readable_without_colour(tmp_path):
    """A reviewer sees each determination at a glance: the overall verdict and every line carry
    a badge whose words name the determination; the kinds differ by border style as well as
    colour, so a black-and-white printout still tells them apart."""
    import json

    path = tmp_path / "report.html"
    path.write_text(_explain(ROOT / "examples" / "alif-plif-l5-s1.json", "--format", "html"), encoding="utf-8")
    doc = json.loads(_explain(ROOT / "examples" / "alif-plif-l5-s1.json", "--format", "json"))
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page()
        page.goto(path.as_uri())
        verdict = page.locator("p.verdict").first
        assert verdict.is_visible() and verdict.bounding_box()["y"] < 400, "the verdict is at the top"
        assert "NOT MEDICALLY NECESSARY" in verdict.locator(".status").inner_text()
        heads = page.locator("h3.line-head .status")
        assert heads.count() == len(doc["lines"])
        for i, line in enumerate(doc["lines"]):
            words = line["determination"].replace("_", " ").upper()
            assert words in heads.nth(i).inner_text().upper(), (i, words)
        page.emulate_media(media="print")
        styles = {}
        for badge in page.locator(".status").all():
            det = badge.get_attribute("data-determination")
            style = badge.evaluate("e => { const s = getComputedStyle(e); return [s.borderTopStyle, s.borderTopWidth]; }")
            assert style[0] != "none" and badge.is_visible()
            styles.setdefault(det, set()).add(tuple(style))
        # Positive, negative and conditional determinations look different without colour.
        looks = {det: next(iter(s)) for det, s in styles.items()}
        assert looks["not_medically_necessary"] != looks["documentation_insufficient"]
        browser.close()
