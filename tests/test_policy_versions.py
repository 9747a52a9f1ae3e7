"""Policy versions by date of service: windows, edges, and a rule author's new version."""
import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import case_with, decide
from ionm_logic.errors import InputError
from ionm_logic.engine.engine import Engine
from ionm_logic.policy import select, versions
from strategies import cases


def test_shipped_packs_and_windows(kb):
    windows = {(v.pack, v.version): v.window() for pack in ("commercial-reference", "cms-lcd-l34623",
                                                            "anthem-cg-surg-104", "bcbsa-7.01.58")
               for v in versions(kb, pack)}
    # domain.md §8.5: Anthem's copies are effective 2023-04-12; the earlier version is kept, unverified,
    # and closes the day before. §8.8: BCBSA 7.01.58 from 2022-05-15.
    assert windows == {
        ("commercial-reference", "2020-01-01"): ["2020-01-01", None],
        ("cms-lcd-l34623", "2015-10-01"): ["2015-10-01", "2024-01-31"],
        ("cms-lcd-l34623", "2024-02-01"): ["2024-02-01", None],
        ("anthem-cg-surg-104", "2020-01-01"): ["2020-01-01", "2023-04-11"],
        ("anthem-cg-surg-104", "2023-04-12"): ["2023-04-12", None],
        ("bcbsa-7.01.58", "2022-05-15"): ["2022-05-15", None],
    }


@pytest.mark.parametrize("day, version", [
    ("2015-10-01", "2015-10-01"),   # first day of the first version
    ("2024-01-31", "2015-10-01"),   # last day: the revision closes it the day before it starts
    ("2024-02-01", "2024-02-01"),   # first day of the revision
    ("2031-12-31", "2024-02-01"),   # open-ended
])
def test_version_at_window_edges(kb, day, version):
    assert select(kb, "cms-lcd-l34623", datetime.date.fromisoformat(day)).version == version


def test_day_before_the_first_version_is_an_input_error_naming_payer_date_and_windows(kb):
    with pytest.raises(InputError) as exc:
        select(kb, "cms-lcd-l34623", datetime.date(2015, 9, 30))
    text = exc.value.render()
    assert "cms-lcd-l34623" in text and "2015-09-30" in text and "2015-10-01" in text and "/date_of_service" in text


def test_json_names_the_version_used(kb):
    out = decide(kb, case_with(payer="cms-lcd-l34623", date_of_service="2023-12-01"), missing=False)
    assert out["policy"] == {"id": "cms-lcd-l34623", "version": "2015-10-01", "in_force": ["2015-10-01", "2024-01-31"]}
    out = decide(kb, case_with(payer="cms-lcd-l34623"), as_of=datetime.date(2024, 2, 1), missing=False)
    assert out["policy"]["version"] == "2024-02-01"


def test_a_new_version_through_rules_closes_the_shipped_one(tmp_path):
    mine = tmp_path / "rev"
    mine.mkdir()
    (mine / "anthem-2026.dl").write_text(
        '% A rule author\'s revision of the Anthem guideline.\n'
        'policy_version("anthem-cg-surg-104", "2026-07-01", "2026-07-01").\n')
    kb = Engine.load([mine])
    got = {v.version: v.window() for v in versions(kb, "anthem-cg-surg-104")}
    assert got == {"2020-01-01": ["2020-01-01", "2023-04-11"], "2023-04-12": ["2023-04-12", "2026-06-30"],
                   "2026-07-01": ["2026-07-01", None]}
    # The shipped knowledge base is left as it was for the next user of this thread.
    assert {v.version for v in versions(Engine.load(), "anthem-cg-surg-104")} == {"2020-01-01", "2023-04-12"}


WINDOWS = {
    "commercial-reference": [(datetime.date(2020, 1, 1), datetime.date(2030, 12, 31))],
    "cms-lcd-l34623": [(datetime.date(2015, 10, 1), datetime.date(2024, 1, 31)),
                       (datetime.date(2024, 2, 1), datetime.date(2030, 12, 31))],
    "anthem-cg-surg-104": [(datetime.date(2020, 1, 1), datetime.date(2023, 4, 11)),
                           (datetime.date(2023, 4, 12), datetime.date(2030, 12, 31))],
    "bcbsa-7.01.58": [(datetime.date(2022, 5, 15), datetime.date(2030, 12, 31))],
}


def _signature(out):
    return [(l["determination"], sorted(f["rule"] for f in l["findings"])) for l in out["lines"]], out["policy"]


@settings(max_examples=40, deadline=None)
@given(doc=cases(), pack=st.sampled_from(sorted(WINDOWS)), data=st.data())
def test_moving_the_date_of_service_inside_one_window_changes_nothing(kb, doc, pack, data):
    start, end = data.draw(st.sampled_from(WINDOWS[pack]))
    days = (end - start).days
    first = start + datetime.timedelta(days=data.draw(st.integers(0, days)))
    second = start + datetime.timedelta(days=data.draw(st.integers(0, days)))
    doc["payer"] = pack
    doc["date_of_service"] = first.isoformat()
    a = decide(kb, doc, missing=False)
    doc["date_of_service"] = second.isoformat()
    b = decide(kb, doc, missing=False)
    assert _signature(a) == _signature(b)
