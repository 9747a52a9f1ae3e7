"""`ionm-logic serve` over real HTTP: uvicorn on 127.0.0.1 in a subprocess, called with httpx."""
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time

import httpx
import pytest
from click.testing import CliRunner

from conftest import ROOT
from ionm_logic.cli import main

ORDER_EXAMPLES = sorted((ROOT / "examples" / "fhir").glob("*.order.json"))
HOOK = "/cds-services/ionm-coverage"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`ionm-logic serve ARGS` on a free port; with `factory` ("test_module:function"), uvicorn
    around the app that function builds (tests that need rules the CLI would refuse); with
    `script`, that Python code given the port as its argument."""

    def __init__(self, *args, factory: str = "", script: str = "", env: dict = None):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
        command = [sys.executable, "-m", "ionm_logic", "serve", "--port", str(self.port), *args]
        if factory or script:
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(ROOT / "tests")])
        if factory:
            command = [sys.executable, "-m", "uvicorn", "--factory", factory, "--host", "127.0.0.1",
                       "--port", str(self.port), "--log-level", "warning", "--no-access-log", *args]
        if script:
            command = [sys.executable, "-c", script, str(self.port)]
        self.proc = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(self.proc.stderr.read().decode())
            try:
                if httpx.get(self.base + "/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("the server did not start")

    def stop(self) -> str:
        self.proc.terminate()
        try:
            _out, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        return err.decode()


@pytest.fixture(scope="module")
def server():
    srv = Server()
    yield srv
    err = srv.stop()
    assert "Traceback" not in err, err


def hook_request(bundle: dict, hook: str = "order-sign") -> dict:
    """A CDS Hooks call built from an order Bundle: the IONM orders as draftOrders, the rest as prefetch."""
    resources = [e["resource"] for e in bundle["entry"]]
    ionm = [r for r in resources if r["resourceType"] == "ServiceRequest" and r.get("basedOn")]
    surgery = [r for r in resources if r["resourceType"] == "ServiceRequest" and not r.get("basedOn")]

    def search(kind):
        return {"resourceType": "Bundle", "type": "searchset",
                "entry": [{"resource": r} for r in resources if r["resourceType"] == kind]}

    return {"hook": hook, "hookInstance": "d1577c69-dfbe-44ad-ba6d-3e05e953b2ea",
            "context": {"userId": "Practitioner/surgeon", "patientId": "patient",
                        "draftOrders": {"resourceType": "Bundle", "type": "collection", "id": bundle["id"],
                                        "identifier": bundle["identifier"], "entry": [{"resource": r} for r in ionm]}},
            "prefetch": {"patient": next(r for r in resources if r["resourceType"] == "Patient"),
                         "coverage": search("Coverage"), "conditions": search("Condition"),
                         "surgery": {"resourceType": "Bundle", "type": "searchset",
                                     "entry": [{"resource": r} for r in surgery]},
                         "facts": search("Observation")}}


def cli_crd(path) -> dict:
    out = CliRunner().invoke(main, ["explain", str(path), "--format", "crd"])
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_discovery_lists_the_ionm_coverage_service_for_order_sign(server):
    services = httpx.get(server.base + "/cds-services").json()["services"]
    sign = [s for s in services if s["id"] == "ionm-coverage"]
    assert len(sign) == 1 and sign[0]["hook"] == "order-sign" and sign[0]["description"]
    assert {"patient", "coverage"} <= set(sign[0]["prefetch"])
    assert {s["hook"] for s in services} == {"order-sign", "order-select", "order-dispatch"}


def test_version_health_and_openapi(server, kb):
    version = httpx.get(server.base + "/version").json()
    assert version["knowledge_base"]["sha256"] == kb.sha256
    assert {p["pack"] for p in version["packs"]} >= {"commercial-reference", "cms-lcd-l34623"}
    assert httpx.get(server.base + "/healthz").json() == {"status": "ok"}
    paths = httpx.get(server.base + "/openapi.json").json()["paths"]
    assert {"/cds-services", "/cds-services/{service_id}", "/explain", "/healthz", "/version"} <= set(paths)


@pytest.mark.parametrize("path", ORDER_EXAMPLES, ids=lambda p: p.name)
def test_the_order_sign_answer_equals_explain_format_crd(server, path):
    response = httpx.post(server.base + HOOK, json=hook_request(json.loads(path.read_text())), timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == cli_crd(path)
    explained = httpx.post(server.base + "/explain?format=crd", content=path.read_bytes(), timeout=30)
    assert explained.json() == cli_crd(path)


@pytest.mark.parametrize("path", sorted((ROOT / "examples" / "fhir" / "hooks").glob("order-sign.*.json")),
                         ids=lambda p: p.name)
def test_the_shipped_hook_calls_are_their_bundles_as_order_sign_and_answer_like_explain(server, path):
    bundle = ROOT / "examples" / "fhir" / (path.name.split(".", 1)[1].rsplit(".", 1)[0] + ".order.json")
    assert json.loads(path.read_text()) == hook_request(json.loads(bundle.read_text()))
    assert _post(server, HOOK, path.read_bytes()).json() == cli_crd(bundle)


def test_explain_formats(server):
    case = (ROOT / "examples" / "alif-plif-l5-s1.json").read_bytes()
    local = CliRunner().invoke(main, ["explain", str(ROOT / "examples" / "alif-plif-l5-s1.json"), "--format", "json"])
    answer = httpx.post(server.base + "/explain", content=case, timeout=30)
    assert answer.status_code == 200 and answer.json() == json.loads(local.output)
    text = httpx.post(server.base + "/explain?format=text", content=case, timeout=30)
    assert text.headers["content-type"].startswith("text/plain") and "95941" in text.text
    q = httpx.post(server.base + "/explain?format=questionnaire",
                   content=(ROOT / "examples" / "fhir" / "alif-plif-l5-s1.claim.json").read_bytes(), timeout=30)
    assert q.json()["resourceType"] == "Questionnaire"


def test_eight_concurrent_clients_get_only_the_single_threaded_answers(server):
    bodies = [json.dumps(hook_request(json.loads(p.read_text()))).encode() for p in ORDER_EXAMPLES]
    with httpx.Client(timeout=60) as client:
        expected = [client.post(server.base + HOOK, content=b, headers={"content-type": "application/json"}).content
                    for b in bodies]
    failures, mismatches, done = [], [], []

    def client_run(k):
        with httpx.Client(timeout=60) as client:
            for i in range(200):
                n = (k + i) % len(bodies)
                try:
                    r = client.post(server.base + HOOK, content=bodies[n], headers={"content-type": "application/json"})
                except httpx.HTTPError as exc:
                    failures.append(repr(exc))
                    continue
                if r.status_code != 200:
                    failures.append(r.status_code)
                elif r.content != expected[n]:
                    mismatches.append(n)
                done.append(1)

    threads = [threading.Thread(target=client_run, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == [] and mismatches == [] and len(done) == 1600


def _post(server, path, body, **headers):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(server.base + path, content=content, headers={"content-type": "application/json", **headers},
                      timeout=30)


def _bad_requests():
    bundle = json.loads(ORDER_EXAMPLES[0].read_text())
    good = hook_request(bundle)

    def changed(edit):
        call = json.loads(json.dumps(good))
        edit(call)
        return call

    def bad_payer(call):
        call["prefetch"]["coverage"]["entry"][0]["resource"]["payor"][0]["identifier"]["value"] = "acme"

    case = json.loads((ROOT / "examples" / "alif-plif-l5-s1.json").read_text())
    return [
        ("bad JSON", HOOK, b"{not json", 400, ""),
        ("not an object", HOOK, [1, 2], 400, ""),
        ("no hook", HOOK, changed(lambda c: c.pop("hook")), 400, "/hook"),
        ("an unknown hook", HOOK, changed(lambda c: c.update(hook="patient-view")), 400, "/hook"),
        ("no draftOrders", HOOK, changed(lambda c: c["context"].pop("draftOrders")), 400, "/context/draftOrders"),
        ("a null prefetch, no fhirServer", HOOK, changed(lambda c: c["prefetch"].update(coverage=None)), 412,
         "/prefetch/coverage"),
        ("no prefetch at all", HOOK, changed(lambda c: c.pop("prefetch")), 412, "/prefetch/patient"),
        ("a missing prefetch with a fhirServer", HOOK,
         changed(lambda c: (c["prefetch"].pop("patient"), c.update(fhirServer=f"http://127.0.0.1:{free_port()}/fhir"))),
         412, "/prefetch/patient"),
        ("a fhirServer that is not a string", HOOK, changed(lambda c: c.update(fhirServer=42)), 400, "/fhirServer"),
        ("bad FHIR in an order", HOOK,
         changed(lambda c: c["context"]["draftOrders"]["entry"][0]["resource"].update(quantityQuantity={"value": "many"})),
         400, "/context/draftOrders/entry/0/resource/quantityQuantity/value"),
        ("an unknown resource type", HOOK,
         changed(lambda c: c["prefetch"].update(patient={"resourceType": "Gizmo"})), 400, "/prefetch/patient"),
        ("an IONM order without a CPT coding", HOOK,
         changed(lambda c: c["context"]["draftOrders"]["entry"][0]["resource"]["code"]["coding"][0].update(system="x")),
         400, "/context/draftOrders/entry/0/resource/code"),
        ("an unknown payer", HOOK, changed(bad_payer), 422, "/prefetch/coverage/entry/0/resource/payor/0"),
        ("draftOrders entries that are not an array", HOOK,
         changed(lambda c: c["context"]["draftOrders"].update(entry=True)), 400, "/context/draftOrders/entry"),
        ("a prefetch search Bundle whose entries are not an array", HOOK,
         changed(lambda c: c["prefetch"]["conditions"].update(entry=1.5)), 400, "/prefetch/conditions/entry"),
        ("explain: bad JSON", "/explain", b"[", 400, ""),
        ("explain: a bad case field", "/explain", dict(case, services=[]), 400, "/services"),
        ("explain: an unknown pack", "/explain", dict(case, payer="acme"), 422, "/payer"),
        ("explain: an unknown format", "/explain?format=pdf", case, 400, "format"),
        ("explain: a bad as_of", "/explain?as_of=yesterday", case, 400, "as_of"),
        ("an unknown service", "/cds-services/nope", good, 404, ""),
    ]


@pytest.mark.parametrize("name,path,body,status,where", _bad_requests(), ids=[b[0] for b in _bad_requests()])
def test_bad_requests_get_their_status_and_an_operation_outcome(server, name, path, body, status, where):
    r = _post(server, path, body)
    assert r.status_code == status, r.text
    outcome = r.json()
    assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"]
    assert any(where in (issue["location"][0] + issue["diagnostics"]) for issue in outcome["issue"]), outcome
    assert "Traceback" not in r.text


class _FhirServer(http.server.BaseHTTPRequestHandler):
    """A FHIR server for prefetch: answers Patient/patient and the Coverage search, with a token."""
    resources = {}

    def do_GET(self):  # noqa: N802 - the http.server interface
        if self.headers.get("authorization") != "Bearer secret-token":
            self.send_response(401)
            self.end_headers()
            return
        body = self.resources.get(self.path.split("/fhir/", 1)[-1].split("?")[0])
        self.send_response(200 if body else 404)
        self.send_header("content-type", "application/fhir+json")
        self.end_headers()
        if body:
            self.wfile.write(json.dumps(body).encode())

    def log_message(self, *args):
        pass


def test_missing_prefetch_is_fetched_from_the_fhir_server_with_its_token(server):
    path = ORDER_EXAMPLES[0]
    call = hook_request(json.loads(path.read_text()))
    _FhirServer.resources = {"Patient/patient": call["prefetch"].pop("patient"),
                             "Coverage": call["prefetch"].pop("coverage")}
    fhir = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FhirServer)
    threading.Thread(target=fhir.serve_forever, daemon=True).start()
    try:
        call["fhirServer"] = f"http://127.0.0.1:{fhir.server_address[1]}/fhir"
        call["fhirAuthorization"] = {"access_token": "secret-token", "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "ionm-coverage"}
        assert _post(server, HOOK, call).json() == cli_crd(path)
        call["fhirAuthorization"]["access_token"] = "wrong"
        refused = _post(server, HOOK, call)
        assert refused.status_code == 412 and "/prefetch/patient" in refused.text
    finally:
        fhir.shutdown()


def test_order_select_gives_coverage_information_without_asking_for_documents(server):
    """CRD: on a secondary hook coverage information SHALL NOT ask for documents."""
    path = next(p for p in ORDER_EXAMPLES if p.name.startswith("alif-plif"))
    call = hook_request(json.loads(path.read_text()), hook="order-select")
    response = _post(server, "/cds-services/ionm-coverage-order-select", call).json()
    signed = cli_crd(path)
    urls = [[e["url"] for e in a["resource"]["extension"][0]["extension"]] for a in response["systemActions"]]
    assert not any("doc-needed" in u or "questionnaire" in u for u in urls)
    signed_urls = [[e["url"] for e in a["resource"]["extension"][0]["extension"]] for a in signed["systemActions"]]
    assert any("questionnaire" in u for u in signed_urls)  # the same orders on order-sign do ask
    assert [sorted(set(s) - {"doc-needed", "questionnaire"}) for s in signed_urls] == [sorted(u) for u in urls]


def test_a_get_on_the_hook_is_405_not_500(server):
    r = httpx.get(server.base + HOOK)
    assert r.status_code == 405 and r.json()["resourceType"] == "OperationOutcome"


def _jwt(private_key, aud, alg="RS384", kid="k1"):
    import jwt

    return jwt.encode({"iss": "https://ehr.example", "aud": aud, "exp": int(time.time()) + 300, "iat": int(time.time()),
                       "jti": "x"}, private_key, algorithm=alg, headers={"kid": kid})


def test_with_jwks_only_a_valid_cds_hooks_token_is_let_in(tmp_path):
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key()))
    public.update(kid="k1", alg="RS384", use="sig")
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [public]}))
    srv = Server("--jwks", str(jwks))
    try:
        body = hook_request(json.loads(ORDER_EXAMPLES[0].read_text()))
        url = srv.base + HOOK
        assert _post(srv, HOOK, body).status_code == 401
        assert _post(srv, HOOK, body, authorization="Bearer " + _jwt(key, url)).status_code == 200
        assert _post(srv, HOOK, body, authorization="Bearer " + _jwt(key, "https://elsewhere/")).status_code == 401
        forged = jwt.encode({"aud": url, "exp": int(time.time()) + 300}, "s" * 32, algorithm="HS256")
        assert _post(srv, HOOK, body, authorization="Bearer " + forged).status_code == 401
        assert httpx.get(srv.base + "/cds-services").status_code == 200
    finally:
        assert "Traceback" not in srv.stop()


def test_two_workers_answer_like_one(server):
    srv = Server("--workers", "2")
    try:
        for path in ORDER_EXAMPLES:
            body = hook_request(json.loads(path.read_text()))
            assert _post(srv, HOOK, body).content == _post(server, HOOK, body).content
    finally:
        srv.stop()


def _where_the_work_runs(kb):
    """Engine work that says where it ran: process, whether on that process's main thread, and an answer."""
    import threading

    return os.getpid(), threading.current_thread() is threading.main_thread(), kb.values("policy_pack", None, None)


def test_the_servers_engine_answers_from_its_own_process_on_that_processs_one_thread(kb):
    """All engine work of a server worker runs in its engine process, on the one thread that loaded
    the rules there (the server's threads never hold a knowledge base, so none can use one from
    the wrong thread; an Engine used off its thread raises, tests/test_engine.py). Until issue 16
    this was one engine thread inside the server process; a decision that never finished held
    the GIL there and stopped the whole server (tests/test_serve_time_limit.py)."""
    from ionm_logic import api
    from ionm_logic.serve import EngineProcess, version_info

    engine = EngineProcess(api.rule_set(), seconds=60)
    try:
        pid, on_main_thread, titles = engine.call(_where_the_work_runs)
        assert pid != os.getpid() and on_main_thread
        assert ("commercial-reference", "Reference commercial payer: Intraoperative Neurophysiological Monitoring") \
            in titles
        assert engine.call(version_info) == version_info(kb)
        assert engine.call(_where_the_work_runs)[0] == pid  # loaded once: the same process answers again
    finally:
        engine.close()
    assert engine.proc is None


def _dies(kb):
    os._exit(3)  # as the kernel's OOM killer or an operator's kill would end it, mid-work


def test_an_engine_process_that_dies_is_a_500_for_its_request_and_replaced_for_the_next(kb):
    from ionm_logic import api
    from ionm_logic.serve import EngineProcess, Problem, version_info

    engine = EngineProcess(api.rule_set(), seconds=60)
    try:
        first = engine.call(_where_the_work_runs)[0]
        with pytest.raises(Problem) as caught:
            engine.call(_dies)
        assert caught.value.status == 500 and "ended without an answer" in caught.value.outcome()["issue"][0]["diagnostics"]
        second = engine.call(_where_the_work_runs)[0]
        assert second != first
        os.kill(second, 9)  # killed while idle: the next request starts another, unharmed
        engine.proc.join()
        assert engine.call(version_info) == version_info(kb)
        assert engine.call(_where_the_work_runs)[0] not in (first, second)
    finally:
        engine.close()


def test_an_answer_refused_in_the_engine_process_crosses_to_the_server_as_the_same_problem():
    import pickle

    from ionm_logic.serve import Problem

    problem = pickle.loads(pickle.dumps(Problem(422, [("/payer", "unknown payer 'acme'")], "invalid")))
    assert (problem.status, problem.issues, problem.code) == (422, [("/payer", "unknown payer 'acme'")], "invalid")


def test_random_damage_to_a_hook_call_gives_an_answer_or_a_4xx_never_another_error(kb):
    """Delete or replace one or two values anywhere in the shipped calls (fixed seed, in process,
    on the same functions the endpoint runs): each call is answered or refused with a Problem
    (an OperationOutcome and a 4xx status), never with any other exception (a 500)."""
    import copy
    import random

    from ionm_logic import serve

    calls = [hook_request(json.loads(p.read_text())) for p in ORDER_EXAMPLES]
    junk = [None, "", "x", 0, 1.5, True, [], {}, {"resourceType": "Bundle"}, {"resourceType": "Patient"},
            {"resourceType": "Bundle", "entry": [1]}, {"resourceType": 3}, "order-sign"]

    def paths(node, pre=()):
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            yield pre + (key,)
            yield from paths(value, pre + (key,))

    rng = random.Random(12)
    statuses = set()
    for _ in range(300):
        call = copy.deepcopy(rng.choice(calls))
        places = list(paths(call))
        for _ in range(rng.randint(1, 2)):
            place = rng.choice(places[:80] if rng.random() < 0.5 else places)
            parent = call
            try:
                for part in place[:-1]:
                    parent = parent[part]
                if rng.random() < 0.5:
                    del parent[place[-1]]
                else:
                    parent[place[-1]] = rng.choice(junk)
            except (KeyError, IndexError, TypeError):
                pass  # an earlier change removed this place
        try:
            serve.check_call(call)
            if any((call.get("prefetch") or {}).get(key) is None for key in serve.REQUIRED_PREFETCH):
                statuses.add(412)
                continue
            json.loads(serve.hook_call(kb, call))
            statuses.add(200)
        except serve.Problem as problem:
            assert 400 <= problem.status < 500 and problem.outcome()["issue"]
            statuses.add(problem.status)
    assert {200, 400} <= statuses
