"""The parsed-rule cache cannot run code and cannot change an answer from a file someone else
planted: it is JSON read with type checks, in a private folder, from files this user owns."""
import json
import os
import pickle
import stat

import pytest

from conftest import REFERENCE
from ionm_logic.api import explain
from ionm_logic.case import parse_case
from ionm_logic.engine import load_rules, ruleset
from ionm_logic.engine.engine import Engine


class Planted:
    """Unpickling this writes a marker file: what a planted pickle could do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def cache_file(tmp_path):
    files = list((tmp_path / "ionm-logic").glob("rules-v*.json"))
    assert len(files) == 1
    return files[0]


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("IONM_LOGIC_CACHE", str(tmp_path))
    load_rules()  # writes the cache: its path is the one an attacker predicts
    return cache_file(tmp_path)


def decide(rules):
    return explain(Engine(rules), parse_case(REFERENCE.read_bytes()))


@pytest.fixture(scope="module")
def truth():
    previous = os.environ.get("IONM_LOGIC_CACHE")
    os.environ["IONM_LOGIC_CACHE"] = "off"
    try:
        return decide(load_rules())
    finally:
        if previous is None:
            del os.environ["IONM_LOGIC_CACHE"]
        else:
            os.environ["IONM_LOGIC_CACHE"] = previous


def test_the_cache_folder_is_private_and_its_file_is_plain_json(cache):
    assert stat.S_IMODE(cache.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache.stat().st_mode) == 0o600
    assert json.loads(cache.read_text())["format"] == "ionm-logic/parsed-rules/v1"


def test_a_planted_pickle_runs_nothing_and_the_answer_is_right(cache, tmp_path, truth):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(Planted(str(marker)))
    cache.write_bytes(payload)
    # The old cache file name too, in case anything still looks there.
    cache.with_name(cache.name.replace(".json", ".pickle")).write_bytes(payload)
    assert decide(load_rules()) == truth
    assert not marker.exists()
    assert json.loads(cache.read_text())["format"] == "ionm-logic/parsed-rules/v1"  # the miss re-wrote it


def forged(cache):
    """The cached rules with every finding turned medically_necessary: well-formed, wrong."""
    data = json.loads(cache.read_text())
    for f in data["files"]:
        for rule in f["rules"]:
            if rule[1][0] in ("modality_line_finding", "time_line_finding"):
                rule[1][1][2] = ["c", "medically_necessary"]
    return json.dumps(data)


def test_a_planted_json_from_another_user_is_never_read(cache, truth, monkeypatch):
    cache.write_text(forged(cache))
    # The file is this process's; tell the reader this user is someone else, so it is foreign.
    real = os.getuid()
    monkeypatch.setattr(os, "getuid", lambda: real + 1)
    assert decide(load_rules()) == truth


def test_a_cache_file_others_may_write_is_never_read(cache, truth):
    cache.write_text(forged(cache))
    cache.chmod(0o666)
    assert decide(load_rules()) == truth


@pytest.mark.parametrize("content", [
    b"not json", b"[]", b'{"format": "ionm-logic/parsed-rules/v1"}', b"[" * 100000,
    json.dumps({"format": "ionm-logic/parsed-rules/v1", "files": [{"path": 1}], "problems": []}).encode(),
    json.dumps({"format": "ionm-logic/parsed-rules/v1", "files": [], "problems": [["f", True, "error", "x"]]}).encode(),
], ids=["not-json", "a-list", "no-files", "deeply-nested", "wrong-type", "a-bool-for-a-line"])
def test_a_corrupt_cache_file_is_a_miss(cache, truth, content):
    cache.write_bytes(content)
    assert decide(load_rules()) == truth


def test_a_cache_file_keyed_for_other_rules_is_a_miss(cache, tmp_path, truth):
    # A well-formed file of this user's carries the key it was written for; moved to another
    # key's name, it is not read.
    data = json.loads(cache.read_text())
    data["key"] = "0" * 64
    cache.write_text(json.dumps(data))
    assert decide(load_rules()) == truth


def test_a_blocked_cache_folder_leaves_no_temporary_file(tmp_path, monkeypatch):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the cache folder would be")
    monkeypatch.setenv("IONM_LOGIC_CACHE", str(blocked))
    load_rules()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blocked"]
    assert ruleset._read_cache("0" * 64) is None


def test_the_forgery_would_change_the_answer_were_it_read(cache, truth):
    # What the two tests above keep out: the same forged file, this user's own and private, is
    # read (the cache trusts only its owner's files, and the owner can run code anyway).
    cache.write_text(forged(cache))
    cache.chmod(0o600)
    assert decide(load_rules()) != truth
