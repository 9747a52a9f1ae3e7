"""`ionm-logic serve`: CDS Hooks 2.0 / Da Vinci CRD and /explain over HTTP (FastAPI on uvicorn).

pyDatalog's evaluation holds the GIL and never returns to the interpreter inside its fixpoint
loop, so a decision that never finishes would stop every thread of the process that runs it.
The engine therefore lives in an engine process of its own, one per server worker: it loads the
rules once and does all engine work on its one thread. The server's event loop only reads
requests and writes answers; it hands each piece of engine work to the engine process, one at a
time in arrival order, and waits for the answer on a helper thread. A decision past the time
limit (engine/limits.py) gets the engine process killed and replaced, and its request a 503
OperationOutcome; /healthz and every other request go on. `--workers N` runs N server workers,
each with its engine process. Input problems come back as 4xx with an OperationOutcome naming
the pointer, never a traceback.
"""

import asyncio
import json
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Optional

from . import api
from .engine import RuleSet
from .engine.limits import DecisionTimeout, configured_seconds, decode_outcome, encode_outcome
from .errors import InputError, pointer

SERVICE_ID = "ionm-coverage"
HOOKS = ("order-sign", "order-select", "order-dispatch")
# Hooks where CRD says coverage information SHALL NOT ask for documents.
SECONDARY_HOOKS = ("order-select",)
PREFETCH = {
    "patient": "Patient/{{context.patientId}}",
    "coverage": "Coverage?patient={{context.patientId}}&status=active",
    "conditions": "Condition?patient={{context.patientId}}&clinical-status=active",
    "surgery": "ServiceRequest?patient={{context.patientId}}&status=active",
    "facts": "Observation?patient={{context.patientId}}&code=https://ionm-logic.dev/CodeSystem/case-fact|",
}
REQUIRED_PREFETCH = ("patient", "coverage")
ENV_RULES = "IONM_LOGIC_SERVE_RULES"
ENV_JWKS = "IONM_LOGIC_SERVE_JWKS"
MEDIA = {"json": "application/json", "crd": "application/json", "questionnaire": "application/fhir+json",
         "text": "text/plain; charset=utf-8", "markdown": "text/markdown; charset=utf-8",
         "html": "text/html; charset=utf-8", "dot": "text/vnd.graphviz; charset=utf-8"}


class Problem(Exception):
    """An HTTP answer other than 200: status and (pointer, message) issues."""

    def __init__(self, status: int, issues: list, code: str = "invalid"):
        super().__init__(issues)
        self.status, self.issues, self.code = status, issues, code

    def __reduce__(self):  # it crosses from the engine process: rebuilt from all three arguments
        return Problem, (self.status, self.issues, self.code)

    def outcome(self) -> dict:
        return {"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": self.code, "diagnostics": f"{p or '(document)'}: {m}",
                           "location": [p or "/"]} for p, m in self.issues]}


def _status_of(exc: InputError) -> int:
    """422 for an unknown payer (a CRD rule: the payer must be one this service answers for), else 400."""
    payer = any(m.startswith(("unknown payer", "unknown policy pack")) for _p, m in exc.problems)
    return 422 if payer else 400


# --- the engine process ----------------------------------------------------------------------

STARTUP_SECONDS = 120.0  # loading the rules takes well under a second; this only bounds a broken start
# On SIGTERM or Ctrl-C uvicorn waits for requests in flight before the app shuts down; a decision
# takes well under a second, and one that never ends (with IONM_LOGIC_TIME_LIMIT=off) must not
# hold the shutdown: past this, uvicorn cancels what is left and the engine process is killed.
SHUTDOWN_SECONDS = 5.0
# Imported by the engine process before it says it is ready, so that the first hook call after a
# (re)start does not pay for importing fhir.resources.
PRELOAD = ("ionm_logic.inputs", "ionm_logic.fhir.read", "ionm_logic.fhir.crd", "fhir.resources.R4B")


def _context():
    """spawn: the server process has threads (uvicorn's, the engine client's), and a plain fork of
    a threaded process may inherit a lock some thread held. forkserver would start a replacement
    faster (measured here: 0.06 s against 0.3 s to a compiled engine, imports preloaded in the
    forkserver) but keeps itself alive as long as any process it forked lives, so a decision that
    never finishes would outlive a server killed outright; a spawned child is killed with the
    thread that started it (_end_with_parent)."""
    return multiprocessing.get_context("spawn")


class EngineProcess:
    """This server worker's engine: a child process that owns the loaded rules and does every
    piece of engine work on its one thread, one at a time, each within the time limit."""

    def __init__(self, rules: RuleSet, seconds: Optional[float] = None):
        self.rules, self.seconds = rules, seconds
        # One thread talks to the engine process, so work queues in arrival order as on one engine thread.
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ionm-engine-client")
        self.proc = self.conn = None
        self.ready = self.closed = False

    def start(self) -> None:
        """Start the engine process (it loads the rules while this returns)."""
        ctx = _context()
        here, there = ctx.Pipe()
        self.proc = ctx.Process(target=_engine_main, args=(there, self.rules, os.getpid()), name="ionm-engine",
                                daemon=True)
        self.proc.start()
        there.close()
        self.conn, self.ready = here, False

    def call(self, fn, *args):
        """fn(kb, *args) in the engine process: its answer, or its error raised here; Problem 503
        when it runs past the limit (the engine process is then replaced)."""
        self._ensure_ready()
        try:
            self.conn.send((fn, args))
            if not self.conn.poll(self.seconds):
                self.restart()
                # 503 with issue code `timeout` ("an internal timeout has occurred", FHIR R4
                # issue-type, a transient issue): CDS Hooks 2.0 lets a service answer any 4xx/5xx
                # and names none for this. No Retry-After: the same request would run into the
                # same limit, and without one RFC 9110 has the client treat it as a 500.
                raise Problem(503, DecisionTimeout(self.seconds).problems, "timeout")
            payload = self.conn.recv_bytes()
        except (EOFError, OSError):  # it died (killed from outside, or out of memory)
            self.restart()
            raise Problem(500, [("", "internal error: the engine process ended without an answer")],
                          "exception") from None
        return decode_outcome(payload)

    async def run(self, fn, *args):
        try:
            return await asyncio.get_running_loop().run_in_executor(self.pool, self.call, fn, *args)
        except asyncio.CancelledError:
            # Nothing here cancels a request but uvicorn at shutdown, once requests in flight had
            # SHUTDOWN_SECONDS: the client gets the 503 a request arriving now would, not a
            # dropped connection, and the log no traceback. The engine process is killed next.
            task = asyncio.current_task()
            if task is not None and hasattr(task, "uncancel"):  # Python 3.11+: the cancel is handled
                task.uncancel()
            raise _shutting_down() from None

    def _ensure_ready(self) -> None:
        if self.closed:
            raise _shutting_down()
        if self.proc is None or not self.proc.is_alive():  # never started, or ended by someone else
            self._stop()
            self.start()
        if not self.ready:
            if not self.conn.poll(STARTUP_SECONDS):
                self._stop()
                raise Problem(500, [("", f"internal error: the engine process did not start within "
                                         f"{STARTUP_SECONDS:g} s")], "exception")
            try:
                decode_outcome(self.conn.recv_bytes())  # None once the rules are loaded, else their error
            except (EOFError, OSError):
                self._stop()
                raise Problem(500, [("", "internal error: the engine process ended while loading the rules")],
                              "exception") from None
            self.ready = True

    def restart(self) -> None:
        """Kill the engine process (if running) and start another."""
        self._stop()
        if not self.closed:
            self.start()  # the replacement loads the rules while the answer goes out

    def _stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.join()
            self.proc.close()
        if self.conn is not None:
            self.conn.close()
        self.proc = self.conn = None
        self.ready = False

    def close(self) -> None:
        """Kill the engine process; work waiting for it ends with a 503."""
        self.closed = True
        proc = self.proc
        try:
            if proc is not None:
                proc.kill()  # a decision in progress ends now: its waiting thread sees the pipe close
        except ValueError:  # that thread has just replaced it
            pass
        self.pool.shutdown(wait=True, cancel_futures=True)
        self._stop()


def _shutting_down() -> Problem:
    return Problem(503, [("", "the server is shutting down")], "transient")


def _engine_main(conn, rules: RuleSet, server_pid: int) -> None:
    """The engine process: load the rules on this, its only thread, then do each piece of work
    sent until the server closes the pipe."""
    import importlib

    from .engine.engine import Engine

    # Ctrl-C in the terminal reaches the whole process group: the server ends this process itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _end_with_parent(server_pid)
    loaded = {}

    def load():
        for module in PRELOAD:
            importlib.import_module(module)
        loaded["kb"] = Engine(rules)
        api.tune_memory_for_many_cases()  # a long-lived decider, as batch and Dask workers are

    conn.send_bytes(encode_outcome(load, (), {}))
    kb = loaded.get("kb")
    while kb is not None:
        try:
            fn, args = conn.recv()
        except (EOFError, OSError):
            return
        conn.send_bytes(encode_outcome(fn, (kb, *args), {}))


def _end_with_parent(server_pid: int) -> None:
    """Linux: be killed when the server thread that started this process ends (with its process,
    however it ends), so that a decision that never finishes cannot outlive a server killed
    outright: pyDatalog's loop holds the GIL, no thread of this process could watch for it."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    try:
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    except (OSError, AttributeError):  # pragma: no cover - a libc without prctl
        return
    if os.getppid() != server_pid:  # the server ended before prctl took effect
        os._exit(1)


# --- a request's work (explain_body, hook_call and version_info run in the engine process) ----

def _json(raw: bytes, what: str):
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Problem(400, [("", f"the {what} is not valid JSON: {exc}")], "structure") from None


def explain_body(kb, raw: bytes, fmt: str, payer: Optional[str], as_of: Optional[str]):
    """(media type, text) for POST /explain."""
    from .inputs import parse_input

    try:
        day = api.parse_date(as_of, "as_of")
        inp = parse_input(raw, kb, "", payer_given=payer is not None)
        decision = api.explain_input(kb, inp, payer=payer, as_of=day)
        return MEDIA[fmt], api.render_input(kb, inp, decision, fmt)
    except InputError as exc:
        raise Problem(_status_of(exc), exc.problems) from None


def hook_call(kb, call: dict):
    """The CDS Hooks response (text) for a hook call whose prefetch is complete."""
    from .fhir import crd
    from .inputs import Input
    from .fhir.read import read_bundle

    bundle, origins = _hook_bundle(call)
    try:
        fhir_case = read_bundle(bundle, kb, "")
        inp = Input(fhir_case.case, fhir_case.document, "", fhir_case)
        response = crd.cds_response(kb, inp, api.explain_input(kb, inp).document)
    except InputError as exc:
        raise Problem(_status_of(exc), [(_origin(p, origins), m) for p, m in exc.problems]) from None
    if call["hook"] in SECONDARY_HOOKS:
        for action in response["systemActions"]:
            for ext in action["resource"]["extension"]:
                if ext.get("url") == crd.EXT_COVERAGE_INFORMATION:
                    ext["extension"] = [e for e in ext["extension"] if e["url"] not in ("doc-needed", "questionnaire")]
    return api.to_json(response)


def _origin(bundle_pointer: str, origins: list) -> str:
    """Where in the hook request a pointer into the assembled Bundle came from."""
    parts = bundle_pointer.split("/")
    if len(parts) >= 4 and parts[1] == "entry" and parts[2].isdigit() and parts[3] == "resource":
        k = int(parts[2])
        if k < len(origins):
            return origins[k] + "".join("/" + p for p in parts[4:])
    return "/context/draftOrders" + bundle_pointer


def check_call(call) -> None:
    """The CDS Hooks request shape this service needs (400 naming the field otherwise)."""
    if not isinstance(call, dict):
        raise Problem(400, [("", "a hook request is a JSON object")], "structure")
    problems = []
    if call.get("hook") not in HOOKS:
        problems.append(("/hook", f"hook {call.get('hook')!r} is not one this service answers ({', '.join(HOOKS)})"))
    if not isinstance(call.get("hookInstance"), str):
        problems.append(("/hookInstance", "hookInstance (a string) is required"))
    context = call.get("context")
    orders = context.get("draftOrders") if isinstance(context, dict) else None
    if not isinstance(context, dict):
        problems.append(("/context", "context (an object) is required"))
    elif not isinstance(orders, dict) or orders.get("resourceType") != "Bundle":
        problems.append(("/context/draftOrders", "draftOrders must be a FHIR Bundle of the orders"))
    prefetch = call.get("prefetch", {})
    if prefetch is None:
        prefetch = {}
    if not isinstance(prefetch, dict):
        problems.append(("/prefetch", "prefetch must be an object"))
    if not isinstance(call.get("fhirServer", ""), str):
        problems.append(("/fhirServer", "fhirServer must be a URL"))
    if problems:
        raise Problem(400, problems)


async def complete_prefetch(call: dict) -> None:
    """Fetch each required prefetch the call left out (or sent as null) from its fhirServer, with
    its fhirAuthorization; 412 naming the key when there is no usable server."""
    prefetch = call.get("prefetch") or {}
    missing = [key for key in REQUIRED_PREFETCH if prefetch.get(key) is None]
    if not missing:
        return
    server = call.get("fhirServer")
    if not server:
        raise Problem(412, [(f"/prefetch/{key}", f"required prefetch {key!r} ({PREFETCH[key]}) is missing and no "
                                                 "fhirServer is given") for key in missing], "required")
    import httpx

    patient = (call.get("context") or {}).get("patientId")
    auth = call.get("fhirAuthorization") or {}
    headers = {"accept": "application/fhir+json"}
    if isinstance(auth, dict) and auth.get("access_token"):
        headers["authorization"] = f"Bearer {auth['access_token']}"
    call["prefetch"] = prefetch = dict(prefetch)
    problems = []
    async with httpx.AsyncClient(timeout=3.0) as client:
        for key in missing:
            if not isinstance(patient, str) or not patient:
                problems.append((f"/prefetch/{key}", "missing, and context.patientId is needed to fetch it"))
                continue
            url = server.rstrip("/") + "/" + PREFETCH[key].replace("{{context.patientId}}", patient)
            try:
                response = await client.get(url, headers=headers)
                response.raise_for_status()
                prefetch[key] = response.json()
            except (httpx.HTTPError, ValueError) as exc:
                problems.append((f"/prefetch/{key}", f"missing, and the fhirServer could not give it ({url}: "
                                                     f"{type(exc).__name__})"))
    if problems:
        raise Problem(412, problems, "required")


def _hook_bundle(call) -> tuple:
    """One Bundle from context.draftOrders and the prefetch, and each entry's pointer in the call."""
    orders = call["context"]["draftOrders"]
    prefetch = call.get("prefetch") or {}
    entries, origins = [], []
    if not isinstance(orders.get("entry", []), list):
        raise Problem(400, [("/context/draftOrders/entry", "Bundle.entry must be an array")])
    for i, entry in enumerate(orders.get("entry") or []):
        if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
            raise Problem(400, [(pointer("context", "draftOrders", "entry", i), "an entry must hold a resource")])
        entries.append(entry)
        origins.append(pointer("context", "draftOrders", "entry", i, "resource"))
    for key, value in prefetch.items():
        if value is None:
            continue
        at = pointer("prefetch", key)
        if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
            raise Problem(400, [(at, "a prefetch value must be a FHIR resource or a search Bundle")])
        if value["resourceType"] == "Bundle":
            if not isinstance(value.get("entry", []), list):
                raise Problem(400, [(at + "/entry", "Bundle.entry must be an array")])
            for i, entry in enumerate(value.get("entry") or []):
                if not isinstance(entry, dict) or not isinstance(entry.get("resource"), dict):
                    raise Problem(400, [(f"{at}/entry/{i}", "an entry must hold a resource")])
                entries.append({"resource": entry["resource"], **({"fullUrl": entry["fullUrl"]}
                                                                   if entry.get("fullUrl") else {})})
                origins.append(f"{at}/entry/{i}/resource")
        else:
            entries.append({"resource": value})
            origins.append(at)
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": entries}
    for key in ("id", "identifier"):
        if key in orders:
            bundle[key] = orders[key]
    if "id" not in bundle and "identifier" not in bundle:
        bundle["id"] = call["hookInstance"]
    return bundle, origins


def package_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ionm-logic")
    except PackageNotFoundError:  # pragma: no cover - a source checkout that was never installed
        return "unknown"


def version_info(kb) -> dict:
    from .policy import pack_titles, versions

    packs = [{"pack": pack, "title": title,
              "versions": [{"version": v.version, "in_force": v.window()} for v in versions(kb, pack)]}
             for pack, title in sorted(pack_titles(kb).items())]
    return {"ionm_logic": package_version(), "knowledge_base": {"sha256": kb.sha256, "rules": kb.rule_count(),
                                                                "facts": kb.fact_count()}, "packs": packs}


def discovery() -> dict:
    return {"services": [{
        "hook": hook, "id": SERVICE_ID if hook == "order-sign" else f"{SERVICE_ID}-{hook}",
        "title": "IONM coverage requirements (ionm-logic)",
        "description": "Decides whether each intraoperative neurophysiological monitoring order is medically "
                       "necessary under the payer's policy and returns Da Vinci CRD coverage information, "
                       "with an explanation card citing the deciding rules.",
        "prefetch": PREFETCH,
        "usageRequirements": "Send the IONM ServiceRequests in draftOrders with the surgical request and the "
                             "Coverage; case facts core FHIR has no element for as Observations coded with "
                             "https://ionm-logic.dev/CodeSystem/case-fact.",
        "extension": {"davinci-crd.version": ["2.2"]},
    } for hook in HOOKS]}


# --- the application -------------------------------------------------------------------------

def create_app(rules: Optional[RuleSet] = None, jwks: Optional[str] = None):
    """The application around `rules` (default: the shipped rules, checked); its engine process
    starts with the app and ends with it."""
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    engine = EngineProcess(api.rule_set() if rules is None else rules, configured_seconds())
    verify = _jwt_verifier(jwks) if jwks else None
    info = {}

    @asynccontextmanager
    async def lifespan(_app):
        info.update(await engine.run(version_info))  # starts the engine process and waits for its rules
        try:
            yield
        finally:
            engine.close()

    app = FastAPI(title="ionm-logic", version=package_version(), lifespan=lifespan,
                  description="IONM medical-necessity decisions with proofs: CDS Hooks / Da Vinci CRD and /explain.")
    hook_ids = {f"{SERVICE_ID}-{hook}": hook for hook in HOOKS if hook != "order-sign"} | {SERVICE_ID: "order-sign"}

    def outcome(problem: Problem):
        return JSONResponse(problem.outcome(), status_code=problem.status, media_type="application/fhir+json")

    @app.exception_handler(Problem)
    async def _problem(_request, exc: Problem):
        return outcome(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request, exc):
        issues = [("/" + "/".join(str(p) for p in e["loc"]), e["msg"]) for e in exc.errors()]
        return outcome(Problem(400, issues))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_request, exc):
        return outcome(Problem(exc.status_code, [("", str(exc.detail))], "not-found" if exc.status_code == 404 else "invalid"))

    @app.exception_handler(Exception)
    async def _internal(_request, exc):
        return outcome(Problem(500, [("", f"internal error: {type(exc).__name__}")], "exception"))

    def authorize(request: Request) -> None:
        if verify is not None:
            verify(request.headers.get("authorization"), str(request.url).split("?", 1)[0])

    @app.get("/cds-services", summary="CDS Hooks discovery")
    async def cds_services():
        return discovery()

    @app.post("/cds-services/{service_id}", summary="CDS Hooks call: CRD coverage information for IONM orders")
    async def cds_call(service_id: str, request: Request):
        if service_id not in hook_ids:
            raise Problem(404, [("", f"no CDS service {service_id!r}")], "not-found")
        authorize(request)
        call = _json(await request.body(), "hook request")
        check_call(call)
        await complete_prefetch(call)  # network I/O on the event loop, never in the engine process
        text = await engine.run(hook_call, call)
        return Response(text, media_type="application/json")

    @app.post("/explain", summary="Decide a case file v1 or a FHIR Bundle")
    async def explain(request: Request, format: str = "json", payer: Optional[str] = None,
                      as_of: Optional[str] = None):
        if format not in api.FORMATS:
            raise Problem(400, [("?format", f"unknown format {format!r}; known: {', '.join(api.FORMATS)}")])
        authorize(request)
        raw = await request.body()
        media, text = await engine.run(explain_body, raw, format, payer, as_of)
        return Response(text, media_type=media)

    @app.get("/healthz", summary="Liveness")
    async def healthz():
        return {"status": "ok"}

    @app.get("/version", summary="Package version, knowledge-base sha256, packs and versions")
    async def version():
        return info

    return app


def _jwt_verifier(jwks: str):
    """A bearer-token check: CDS Hooks JWTs signed RS384 or ES384 by a key of the JWKS (URL or file),
    with `aud` the called service URL."""
    import jwt

    if jwks.startswith(("http://", "https://")):
        client = jwt.PyJWKClient(jwks)
        key_for = lambda token: client.get_signing_key_from_jwt(token).key  # noqa: E731
    else:
        with open(jwks, encoding="utf-8") as fh:
            keys = jwt.PyJWKSet.from_dict(json.load(fh))

        def key_for(token):
            kid = jwt.get_unverified_header(token).get("kid")
            for key in keys.keys:
                if kid is None or key.key_id == kid:
                    return key.key
            raise jwt.InvalidTokenError(f"no key {kid!r} in the JWKS")

    def verify(header: Optional[str], audience: str) -> None:
        if not header or not header.lower().startswith("bearer "):
            raise Problem(401, [("Authorization", "a bearer token is required")], "security")
        token = header.split(None, 1)[1]
        try:
            jwt.decode(token, key_for(token), algorithms=["RS384", "ES384"], audience=audience)
        except (jwt.PyJWTError, ValueError) as exc:
            raise Problem(401, [("Authorization", f"the bearer token is not valid: {exc}")], "security") from None

    return verify


def app_factory():
    """The app for uvicorn's --factory (each worker process builds its own, with its own engine process)."""
    rule_dirs = json.loads(os.environ.get(ENV_RULES, "[]"))
    return create_app(api.rule_set(rule_dirs), os.environ.get(ENV_JWKS) or None)


def run(host: str, port: int, workers: int, rule_dirs=(), jwks: Optional[str] = None) -> None:
    import uvicorn

    os.environ[ENV_RULES] = json.dumps([str(d) for d in rule_dirs])
    if jwks:
        os.environ[ENV_JWKS] = jwks
    uvicorn.run("ionm_logic.serve:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False, timeout_graceful_shutdown=SHUTDOWN_SECONDS)
