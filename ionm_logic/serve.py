"""`ionm-logic serve`: CDS Hooks 2.0 / Da Vinci CRD and /explain over HTTP (FastAPI on uvicorn).

pyDatalog keeps per-thread state, so each process loads its rules on one dedicated engine
thread and runs every piece of engine work there (a one-thread executor); the event loop only
reads requests and writes answers. `--workers N` runs N such processes. Input problems come
back as 4xx with an OperationOutcome naming the pointer, never a traceback.
"""

import asyncio
import json
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Optional

from . import api
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

    def outcome(self) -> dict:
        return {"resourceType": "OperationOutcome",
                "issue": [{"severity": "error", "code": self.code, "diagnostics": f"{p or '(document)'}: {m}",
                           "location": [p or "/"]} for p, m in self.issues]}


def _status_of(exc: InputError) -> int:
    """422 for an unknown payer (a CRD rule: the payer must be one this service answers for), else 400."""
    payer = any(m.startswith(("unknown payer", "unknown policy pack")) for _p, m in exc.problems)
    return 422 if payer else 400


class Engine:
    """The one thread of this process that owns the knowledge base; all engine work runs on it."""

    def __init__(self, rule_dirs=()):
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ionm-engine")
        # api.knowledge_base gives each thread its own engine: this one is the engine thread's.
        self.kb = self.pool.submit(api.knowledge_base, tuple(rule_dirs)).result()

    async def run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self.pool, fn, *args)


# --- work done on the engine thread ---------------------------------------------------------

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


def version_info(kb) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    from .policy import pack_titles, versions

    try:
        package = version("ionm-logic")
    except PackageNotFoundError:  # pragma: no cover - a source checkout that was never installed
        package = "unknown"
    packs = [{"pack": pack, "title": title,
              "versions": [{"version": v.version, "in_force": v.window()} for v in versions(kb, pack)]}
             for pack, title in sorted(pack_titles(kb).items())]
    return {"ionm_logic": package, "knowledge_base": {"sha256": kb.sha256, "rules": kb.rule_count(),
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

def create_app(rule_dirs=(), jwks: Optional[str] = None):
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    engine = Engine(rule_dirs)
    verify = _jwt_verifier(jwks) if jwks else None
    info = engine.pool.submit(version_info, engine.kb).result()
    app = FastAPI(title="ionm-logic", version=info["ionm_logic"],
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
        await complete_prefetch(call)  # network I/O on the event loop, never on the engine thread
        text = await engine.run(hook_call, engine.kb, call)
        return Response(text, media_type="application/json")

    @app.post("/explain", summary="Decide a case file v1 or a FHIR Bundle")
    async def explain(request: Request, format: str = "json", payer: Optional[str] = None,
                      as_of: Optional[str] = None):
        if format not in api.FORMATS:
            raise Problem(400, [("?format", f"unknown format {format!r}; known: {', '.join(api.FORMATS)}")])
        authorize(request)
        raw = await request.body()
        media, text = await engine.run(explain_body, engine.kb, raw, format, payer, as_of)
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
    """The app for uvicorn's --factory (each worker process builds its own, with its own engine thread)."""
    rule_dirs = json.loads(os.environ.get(ENV_RULES, "[]"))
    return create_app(rule_dirs, os.environ.get(ENV_JWKS) or None)


def run(host: str, port: int, workers: int, rule_dirs=(), jwks: Optional[str] = None) -> None:
    import uvicorn

    os.environ[ENV_RULES] = json.dumps([str(d) for d in rule_dirs])
    if jwks:
        os.environ[ENV_JWKS] = jwks
    uvicorn.run("ionm_logic.serve:app_factory", factory=True, host=host, port=port, workers=workers,
                log_level="warning", access_log=False)
