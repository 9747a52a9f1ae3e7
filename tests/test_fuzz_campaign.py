"""The standing fuzz campaign, short: mutated case files through explain and through batch
(--jobs 1 and 2, JSON lines and CSV, a file and a folder) with nothing that must never happen."""
import json
import subprocess
import sys

from conftest import ROOT

CAMPAIGN = ROOT / "benchmarks" / "fuzz_campaign.py"


def test_a_short_fuzz_campaign_finds_no_traceback_hang_memory_blowup_or_lost_record():
    out = subprocess.run([sys.executable, str(CAMPAIGN), "--inputs", "200", "--seed", "7", "--json"],
                         capture_output=True, text=True, timeout=900)
    report = json.loads(out.stdout)
    assert out.returncode == 0 and report["failures"] == [], report["failures"]
    (explain,) = report["explain"]
    assert explain["inputs"] == 200 and explain["exit 0"] + explain["exit 2"] == 200
    # The mutator reaches both sides: cases decided and cases rejected.
    assert explain["exit 0"] > 20 and explain["exit 2"] > 20
    for column in ("other exit", "tracebacks", "over 10 s", "over 500 MB", "workers died"):
        assert explain[column] == 0, column
    assert len(report["batch"]) == 5
    for run in report["batch"]:
        assert run["records in"] == run["records out"] and run["lost or reordered"] == 0, run
        assert run["exit"] == 0 and run["tracebacks"] == 0 and run["same as --jobs 1"] in ("", "yes"), run
