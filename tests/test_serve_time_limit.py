"""A decision the engine never finishes ends its request at the time limit; the server goes on.

uvicorn on 127.0.0.1 serves the shipped rules plus the symmetric and transitive fixture, compiled
without `check` as test_time_limit.py's unchecked() does (standing for a shape `check` does not
know yet), with IONM_LOGIC_TIME_LIMIT=3. The fixture's closure never ends on a case with two
operated levels; with one operated level it is empty (LINKED-BASE needs two different levels)
and ends, and LINKED-FINDING never fires, so a one-level case decides exactly as under the
shipped rules alone. The last test runs serve.run itself with no time limit at all, and stops it
while such a decision hangs."""
import json
import signal
import threading
import time

import httpx
import pytest

from conftest import REFERENCE, ROOT, alive, child_pids
from ionm_logic.api import explain
from ionm_logic.case import parse_case
from test_serve import HOOK, Server, hook_request
from test_time_limit import HANGS, unchecked

LIMIT = 3


def unchecked_app():
    """The app these tests serve (uvicorn --factory): built around the unchecked rules, which the
    CLI would refuse; no production switch skips `check`."""
    from ionm_logic.serve import create_app

    return create_app(unchecked(HANGS))


@pytest.fixture(scope="module")
def server():
    srv = Server(factory="test_serve_time_limit:unchecked_app", env={"IONM_LOGIC_TIME_LIMIT": str(LIMIT)})
    yield srv
    err = srv.stop()
    assert "Traceback" not in err, err


def one_level_case() -> dict:
    case = json.loads(REFERENCE.read_text())
    case["procedure"]["levels"] = ["L5"]
    return case


def determinations(document: dict) -> list:
    return [(line["code"], line["determination"]) for line in document["lines"]]


def assert_timeout(response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    [issue] = outcome["issue"]
    assert issue["severity"] == "error" and issue["code"] == "timeout"
    assert f"did not finish within {LIMIT} s (IONM_LOGIC_TIME_LIMIT)" in issue["diagnostics"]
    assert "run ionm-logic check" in issue["diagnostics"]
    assert "Traceback" not in response.text


def test_a_decision_past_the_limit_is_a_503_timeout_while_health_answers_and_the_next_case_is_decided(server, kb):
    assert json.loads(REFERENCE.read_text())["procedure"]["levels"] == ["L5", "S1"]  # two levels: never ends
    answers = {}

    def post(name, body):
        start = time.monotonic()
        answers[name] = (httpx.post(server.base + "/explain", content=body, timeout=60), time.monotonic() - start)

    hanging = threading.Thread(target=post, args=("two levels", REFERENCE.read_bytes()))
    hanging.start()
    time.sleep(1)  # the two-level case is in the engine by now; the next one queues behind it
    waiting = threading.Thread(target=post, args=("one level", json.dumps(one_level_case()).encode()))
    waiting.start()
    health = []
    while hanging.is_alive():
        start = time.monotonic()
        status = httpx.get(server.base + "/healthz", timeout=10).status_code
        health.append((status, time.monotonic() - start))
        time.sleep(0.2)
    hanging.join()
    waiting.join()

    response, took = answers["two levels"]
    assert_timeout(response)
    assert LIMIT <= took < LIMIT + 5
    # The event loop kept answering while the engine process was stuck in pyDatalog's loop.
    assert len(health) >= 5 and {status for status, _ in health} == {200}
    assert max(seconds for _, seconds in health) < 1.5
    # The case that waited behind it was decided by the replacement engine process, as the
    # shipped rules alone decide it (the fixture adds nothing with one operated level).
    response, took = answers["one level"]
    assert response.status_code == 200, response.text
    assert took >= LIMIT - 1.5  # it really waited for the stopped decision
    expected = explain(kb, parse_case(json.dumps(one_level_case()).encode()))
    assert determinations(response.json()) == determinations(expected)
    again = httpx.post(server.base + "/explain", json=one_level_case(), timeout=30)
    assert again.status_code == 200 and determinations(again.json()) == determinations(expected)


def test_a_hook_call_past_the_limit_is_the_same_503_and_the_service_answers_again(server):
    order = json.loads((ROOT / "examples" / "fhir" / "alif-plif-l5-s1.order.json").read_text())  # L5-S1 as orders
    start = time.monotonic()
    response = httpx.post(server.base + HOOK, json=hook_request(order), timeout=60)
    assert_timeout(response)
    assert time.monotonic() - start < LIMIT + 5
    assert httpx.get(server.base + "/cds-services", timeout=10).status_code == 200
    version = httpx.get(server.base + "/version", timeout=10).json()
    assert version["knowledge_base"]["sha256"] == unchecked(HANGS).sha256  # the rules it was given
    decided = httpx.post(server.base + "/explain", json=one_level_case(), timeout=30)
    assert decided.status_code == 200, decided.text


def test_serve_refuses_a_limit_that_is_not_a_number_before_it_starts(monkeypatch):
    from click.testing import CliRunner

    from ionm_logic.cli import main

    monkeypatch.setenv("IONM_LOGIC_TIME_LIMIT", "soon")
    out = CliRunner().invoke(main, ["serve", "--port", "0"])
    assert out.exit_code == 2
    assert "IONM_LOGIC_TIME_LIMIT='soon' is not a number of seconds" in out.output


# serve.run itself (how `ionm-logic serve` starts uvicorn), around the unchecked rules.
RUN = """
import sys
import ionm_logic.serve as serve
import test_serve_time_limit
serve.app_factory = test_serve_time_limit.unchecked_app
serve.run("127.0.0.1", int(sys.argv[1]), 1)
"""


def test_a_decision_that_never_ends_does_not_hold_the_servers_shutdown():
    # With IONM_LOGIC_TIME_LIMIT=off nothing ends a hung decision, and uvicorn's graceful shutdown
    # waits for requests in flight: without a bound, SIGTERM would never stop the server. serve.run
    # gives them SHUTDOWN_SECONDS; then the request is cancelled and the engine process killed.
    from ionm_logic.serve import SHUTDOWN_SECONDS

    srv = Server(script=RUN, env={"IONM_LOGIC_TIME_LIMIT": "off"})
    proc, base = srv.proc, srv.base
    try:
        answers = []

        def post():
            try:
                response = httpx.post(base + "/explain", content=REFERENCE.read_bytes(), timeout=60)
                answers.append((response.status_code, [i["diagnostics"] for i in response.json()["issue"]]))
            except (httpx.HTTPError, ValueError, KeyError) as exc:
                answers.append(repr(exc))

        hanging = threading.Thread(target=post)
        hanging.start()
        time.sleep(2)
        assert hanging.is_alive()  # the two-level case never ends in the engine process
        engines = child_pids(proc.pid)
        assert engines and all(alive(pid) for pid in engines)
        start = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=SHUTDOWN_SECONDS + 25)
        took = time.monotonic() - start
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert SHUTDOWN_SECONDS - 1 <= took < SHUTDOWN_SECONDS + 10, took
    assert proc.returncode in (0, -signal.SIGTERM), err.decode()  # uvicorn ends by the signal it caught
    assert "Traceback" not in err.decode(), err.decode()
    hanging.join(10)
    # What any request gets once shutdown began, not a dropped connection or a made-up answer.
    assert answers == [(503, ["(document): the server is shutting down"])], answers
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in engines) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(alive(pid) for pid in engines)  # the engine process did not outlive its server
