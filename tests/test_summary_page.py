"""`batch --summary` in a real headless browser: the page renders its charts from the batch's counts,
asks the network for nothing, logs no console error, shows case text as text, and a screenshot is
taken."""
import json
import shutil
import subprocess
import sys

import pytest

from conftest import ROOT, reference_case

from test_html_browser import CHROMIUM, FLAGS, sync_api  # the project's browser set-up, one place

CLI = [sys.executable, "-m", "ionm_logic"]
HOSTILE = '<img src=x onerror="document.title=\'owned\'"><script>document.title="owned"</script>'


@pytest.fixture(scope="module")
def page_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("summary")
    tables = ROOT / "examples" / "tables"
    for name in ("claims.parquet",):
        shutil.copy(tables / name, folder / name)
    run = subprocess.run(CLI + ["batch", "claims.parquet", "-o", "out.parquet", "--summary", "summary.html"],
                         cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    # A second batch whose case text is hostile: an unknown service code and a case id of markup.
    hostile = reference_case() | {"case_id": HOSTILE, "services": [{"code": HOSTILE[:40]}, {"code": "95938"}]}
    (folder / "hostile.jsonl").write_text(json.dumps(hostile) + "\n" + json.dumps({"schema": HOSTILE}) + "\n")
    run = subprocess.run(CLI + ["batch", "hostile.jsonl", "-o", "h.jsonl", "--summary", "hostile.html"],
                         cwd=folder, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    return folder


def _open(path, problems, requests):
    p = sync_api.sync_playwright().start()
    browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
    page = browser.new_page(viewport={"width": 900, "height": 900})
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda err: problems.append(str(err)))
    page.on("request", lambda req: requests.append(req.url) if not req.url.startswith("file://") else None)
    page.goto(path.as_uri())
    return p, browser, page


def test_summary_page_renders_its_charts_from_the_batch_and_is_screenshotted(page_file, tmp_path):
    problems, requests = [], []
    p, browser, page = _open(page_file / "summary.html", problems, requests)
    try:
        assert page.title() == "ionm-logic batch summary"
        headings = page.locator("h2").all_inner_texts()
        assert headings == ["Headlines by code", "Headlines by payer", "Headlines by deciding rule",
                            "Errors by reason", "Most often missing documentation"]
        assert page.locator("svg").count() == 5 and page.locator("svg rect").count() > 10
        assert "5 record(s): 3 decided (13 service lines), 2 error(s)." in page.locator("p.totals").inner_text()
        tips = set(page.locator("svg rect title").all_text_contents())
        # examples/tables/expected.yaml: SSEP (95938) is not medically necessary below the cord
        # (ALIF), medically necessary at C5-C6 and, since revision 2 (cortical SSEP), in carotid
        # surgery under the LCD.
        assert {"95938: 1 not medically necessary", "95938: 2 medically necessary"} <= tips
        assert "commercial-reference: 1 documentation insufficient" in tips  # ALIF's remote time, 95941
        assert "cms-lcd-l34623: 3 medically necessary" in tips               # carotid EEG, SSEP and 95940
        assert "PACK-CONCURRENT-CASES-UNDOCUMENTED: 1 documentation insufficient" in tips
        assert {"procedure_levels: unknown vertebral level: 1", "units: input should be greater than or equal to: 1"} <= tips
        assert "monitoring_professional_concurrent_cases: 1" in tips
        shot = tmp_path / "summary.png"
        page.screenshot(path=str(shot), full_page=True)
    finally:
        browser.close()
        p.stop()
    assert problems == [] and requests == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000


def test_case_text_on_the_summary_page_is_text_not_markup(page_file):
    problems, requests = [], []
    p, browser, page = _open(page_file / "hostile.html", problems, requests)
    try:
        assert page.title() == "ionm-logic batch summary"  # no injected script ran
        assert page.locator("script").count() == 0 and page.locator("img").count() == 0
        labels = page.locator("svg text").all_text_contents()
        assert any(label.startswith("<img src=x") for label in labels)  # the unknown code, shown as text
    finally:
        browser.close()
        p.stop()
    assert problems == [] and requests == []
