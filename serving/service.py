"""The BentoML service campaign tools call: it parses, calls the engine, and formats — no logic.

Start it with `cdp serve --workspace W --port N` (or `bentoml serve serving.service:RecommendationService`
with CDP_WORKSPACE set). Endpoints: POST /recommend, POST /events, POST /admin/reload; GET /healthz,
/readyz (BentoML's probes; /readyz fails with the reason while models or the online store are
missing, and so do the API endpoints), /metrics (Prometheus), / (BentoML's Swagger UI; /docs leads
there) and /docs.json (OpenAPI, with the response models, error bodies and the bearer scheme; the
service's fuzz test, tests/serving/test_api_fuzz.py, holds it to what the service answers). Everything
but the probes, /metrics and the docs needs `Authorization: Bearer <token>` with the token from
`serving.api_token` (env CDP_SERVING__API_TOKEN).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import os
import threading
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import bentoml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from starlette.responses import JSONResponse

from cdp import package_version
from cdp.config import TEXT_BLANKS

log = logging.getLogger("cdp.serving")
WORKSPACE_VARIABLE = "CDP_WORKSPACE"
CONFIG_VARIABLE = "CDP_CONFIG_FILE"
OPEN_PATHS = frozenset({"/", "/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs.json"})
"""No token needed: the probes, Prometheus' scrape (/metrics: counts and latencies, nothing about a
customer) and the docs; /docs redirects to BentoML's Swagger UI at /, which reads /docs.json."""
OPEN_PREFIXES = ("/static_content/",)
API_METHODS = {"/recommend": "POST", "/events": "POST", "/admin/reload": "POST"}
"""The protected endpoints and their one method: anything else under a token is a JSON 404 or 405."""
DOCS_PAGE = b"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>Customer intelligence service</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./static_content/index.css" />
    <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png" sizes="32x32" />
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"> </script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"> </script>
    <script src="./static_content/swagger-initializer.js" charset="UTF-8"> </script>
  </body>
</html>
"""
"""BentoML's Swagger UI page (it reads ./docs.json) without the Google Tag Manager script BentoML's own
page loads: no third-party script where a bearer token is typed and customers' answers are shown."""
MAX_BODY_BYTES = 1_000_000
BODY_TOO_LARGE = f"request body over {MAX_BODY_BYTES:,} bytes; send at most 1,000 customers or events per call"
UNAUTHORIZED_HEADERS = ((b"www-authenticate", b'Bearer realm="cdp"'),)
Channel = Literal["email", "push", "sms"]
def _whole_number(value):
    """1.0 as 1: JSON has one number type (JavaScript sends 1 for 1.0, others may not), and OpenAPI 3.1
    counts 1.0 as an integer; "1", true and 1.5 stay refused."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


Flag = Annotated[int, Field(ge=0, le=1, description="1 yes, 0 no."), BeforeValidator(_whole_number)]
EpochSeconds = Annotated[int, Field(ge=0, le=10**10), BeforeValidator(_whole_number)]
"""0 or 1 as a strict integer: Literal[0, 1] would let `false` through."""


def _one_reference_schema(schema: dict[str, Any]) -> None:
    """Say in the OpenAPI schema what `one_reference` enforces, so clients and fuzzers know: one kind
    of reference, given as non-null strings, the other fields absent or null."""
    kinds = (("customer_id",), ("source", "source_id"), ("email",))
    fields = [name for kind in kinds for name in kind]
    schema["oneOf"] = [
        {"required": list(kind),
         "properties": {name: {"type": "string"} if name in kind else {"type": "null"} for name in fields}}
        for kind in kinds
    ]


def _trimmed(text: str) -> str:
    return text.strip(BLANKS)


def _campaign_id(text: str) -> str:
    from cdp.config import campaign_id_problem

    problem = campaign_id_problem(text)
    if problem:
        raise ValueError(problem)
    return text


BLANKS = TEXT_BLANKS
Trimmed = Annotated[str, Field(pattern=f"[^{BLANKS.encode('unicode_escape').decode()}]"), AfterValidator(_trimmed)]
"""Text as the lake stores it (docs/data-contract.md): surrounding spaces trimmed, for /recommend and /events
alike. The lengths are checked as sent; the pattern (a character that is not a space, the same in every
regex dialect) documents that a blank one is refused."""


class CustomerReference(BaseModel):
    """Exactly one way to name a customer: our customer_id, a source system's id, or an e-mail."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_one_reference_schema)
    customer_id: Trimmed | None = Field(None, min_length=1, max_length=64)
    source: Trimmed | None = Field(None, min_length=1, max_length=32)
    source_id: Trimmed | None = Field(None, min_length=1, max_length=128)
    email: Trimmed | None = Field(None, min_length=3, max_length=254)

    @model_validator(mode="after")
    def one_reference(self) -> CustomerReference:
        kinds = [self.customer_id is not None, self.source is not None or self.source_id is not None,
                 self.email is not None]
        if sum(kinds) != 1:
            raise ValueError("give exactly one of: customer_id; source and source_id; email")
        if kinds[1] and (self.source is None or self.source_id is None):
            raise ValueError("source and source_id go together")
        return self


class RecommendContext(BaseModel):
    model_config = ConfigDict(extra="forbid")
    campaign_id: Annotated[Trimmed, AfterValidator(_campaign_id)] | None = Field(None, min_length=1, max_length=128, description=(
        "Holdout assignment is per (customer, campaign), the id compared exactly (case counts) once surrounding "
        "spaces are trimmed, as `cdp score --campaign` does; absent or null: `policy.default_campaign_id`."))
    campaign_type: str | None = Field(None, max_length=64, description=(
        "For the caller's bookkeeping; the decision does not depend on it (each answer has the next-best action "
        "and the win-back decision)."))
    allowed_channels: list[Channel] | None = Field(None, max_length=3, description="Restrict the channels considered.")


class SignalUpdate(BaseModel):
    """Fresh behaviour or a consent change for one customer (fields of the realtime_signals view)."""

    model_config = ConfigDict(extra="forbid", strict=True)  # strict: no "5" or false for a number
    customer_id: Trimmed = Field(..., min_length=1, max_length=64)
    latest_email_consent: Flag | None = None
    latest_push_consent: Flag | None = None
    latest_sms_consent: Flag | None = None
    latest_app_installed: Flag | None = None
    last_order_epoch_seconds: EpochSeconds | None = None
    last_visit_epoch_seconds: EpochSeconds | None = None
    last_app_open_epoch_seconds: EpochSeconds | None = None


# --- request bodies: BentoML's own input models ignore unknown fields (a `contxt` typo would drop a
# campaign's channel limit unnoticed); these refuse them with a 400 naming the field ---
class RecommendRequest(bentoml.IODescriptor):
    model_config = ConfigDict(extra="forbid")
    customers: Annotated[list[CustomerReference], Field(min_length=1, max_length=1000)]
    context: RecommendContext | None = None


class EventsRequest(bentoml.IODescriptor):
    model_config = ConfigDict(extra="forbid")
    events: Annotated[list[SignalUpdate], Field(min_length=1, max_length=1000)]


class ReloadRequest(bentoml.IODescriptor):
    model_config = ConfigDict(extra="forbid")


REQUEST_MODELS = {"recommend": RecommendRequest, "events": EventsRequest, "reload": ReloadRequest}


# --- responses: what serving/engine.py answers, declared so the OpenAPI document describes it ---
class Scores(BaseModel):
    churn_probability: float | None = Field(description=(
        "Null outside the churn model's population (never ordered, or no order in `training.churn_active_days`); "
        "`reasons.churn` then says why."))
    clv: float | None
    conversion_probability: dict[str, float | None] = Field(description="Per candidate action.")


class Alternative(BaseModel):
    action: str
    expected_value: float | None
    eligible: bool
    reason: str | None = Field(description="Why not chosen (ineligible, no score, not worth it); null for a contact worth making.")


class WinBack(BaseModel):
    """The win-back decision, which stands beside the next-best action: it values a contact by the
    customer value it may save (churn probability x CLV x `policy.win_back_save_rate`), the next-best action
    by the orders it adds within the conversion window, so the two may name different actions."""

    eligible: bool
    action: str | None
    offer: str | None = Field(None, description="The action's offer (None: no discount).")
    timing: str | None = Field(None, description="`today` for a win-back to send now; `in N days` (with "
                                                  "`eligible` false and no action) when one waits for a channel's "
                                                  "quiet period, the reason naming it (docs/policy.md).")
    value: float | None = Field(None, description="Value saved minus the action's cost (None when not a candidate).")
    reason: str | None = Field(None, description="Why a win-back, or why not (never ordered, not at risk, ...).")


class Recommendation(BaseModel):
    """One answer, in request order. Unknown customers: `found: false`, the cold-start answer."""

    reference: dict[str, str] | None = Field(None, description="The reference as given (e-mail masked); unknown customers only.")
    customer_id: str | None
    found: bool
    scores: Scores | None
    next_best_action: str = Field(description="`email`, `push:10pct`, ... or `none`.")
    next_best_channel: str | None
    expected_value: float
    policy_action: str | None = Field(None, description="The policy's choice, also for holdout customers.")
    alternatives: list[Alternative]
    win_back: WinBack
    reasons: dict[str, list[str]] = Field(description="Plain phrases per model (churn, propensity).")
    holdout: bool
    no_contact_reason: str | None
    model_versions: dict[str, str]
    feature_timestamp: str | None


class RecommendResponse(BaseModel):
    recommendations: list[Recommendation]


class RefusedCustomer(BaseModel):
    customer_id: str
    reason: str


class RedirectedCustomer(BaseModel):
    customer_id: str = Field(description="The id the events named: retired when identity resolution merged it.")
    applied_to: str = Field(description="The customer the id was merged into, whose online row the events updated.")


class DroppedField(BaseModel):
    customer_id: str
    field: str
    reason: str


class EventsResponse(BaseModel):
    accepted: int = Field(description="Events pushed (several for one customer are merged into one push).")
    refused: list[RefusedCustomer] = Field(default_factory=list, description=(
        "Customers whose events were not pushed: unknown to the identity map, erased, or not materialized yet."))
    redirected: list[RedirectedCustomer] = Field(default_factory=list, description=(
        "Ids retired by a merge whose events were applied to the surviving customer, as `/recommend` answers "
        "such an id with its survivor."))
    dropped_fields: list[DroppedField] = Field(default_factory=list, description=(
        "Fields left out of a push, with why (a moment more than a day in the future, which would stick: a "
        "pushed moment never moves back); the event's other fields were pushed."))
    milliseconds: float


class ReloadResponse(BaseModel):
    model_versions: dict[str, str] = Field(description="The champions this worker loaded.")
    problems: list[str] = Field(description="What keeps the service from answering well; empty when ready.")
    generation: int = Field(description="The reload generation announced to every worker (it counts reloads).")
    message: str = Field(description="What was done, in one sentence.")


class ErrorResponse(BaseModel):
    """401, 413, 415, 500: what went wrong, in one sentence."""

    error: str


class UnavailableResponse(BaseModel):
    """503: not ready; the same problems /readyz names, each with the command that fixes it."""

    error: str
    problems: list[str]


class NotReadyResponse(BaseModel):
    """/readyz when not ready: what is missing and the command that fixes it."""

    ready: bool
    problems: list[str]


class ValidationIssue(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    loc: list[str | int] = Field(description="Where in the body, e.g. [\"customers\", 3, \"email\"].")
    msg: str


class ValidationErrorResponse(BaseModel):
    """400: the body is not JSON or does not match the request schema, or a header is malformed; one issue
    per problem."""

    error: str
    detail: list[ValidationIssue]


def _not_ready(error) -> JSONResponse:
    """503 with the problems /readyz names (an EngineNotReadyError's): BentoML would answer a raised
    error with a generic sentence."""
    problems = list(error.problems) or [str(error)]
    return JSONResponse({"error": "not ready: " + "; ".join(problems), "problems": problems}, status_code=503)


class ClientErrorLogFilter(logging.Filter):
    """BentoML logs every refused body at ERROR with its traceback, whose pydantic message quotes the
    values (`input_value='jane@example.org'`): raw PII in the log for a client's mistake. Such a record
    becomes one INFO line with the route and the kinds of problem: no value, no traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            kinds = sorted({issue["type"] for issue in error.errors(include_url=False, include_context=False,
                                                                    include_input=False)})
            count = error.error_count()
            summary = f"{count} validation issue{'' if count == 1 else 's'} ({', '.join(kinds)})"
        elif isinstance(error, bentoml.exceptions.BentoMLException) and error.error_code.value < 500:
            summary = type(error).__name__
        else:
            return True
        where = record.getMessage().removeprefix("Exception on ")  # BentoML's "Exception on /path [METHOD]"
        record.msg, record.args = "client error on %s, refused: %s", (where, summary)
        record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
        record.exc_info = record.exc_text = record.stack_info = None
        return True


BENTOML_REQUEST_LOGGER = "bentoml._internal.server.http_app"
"""Where BentoML logs a request's exception (`log_exception`)."""


UNKNOWN_PATH = "/(unknown path)"
"""What BentoML's access log, Prometheus labels and traces see in place of a path the service does not
serve: a client may put anything in a URL (`GET /customers/jane@example.org`), and each distinct path
would otherwise be one more log line with it and one more label series in /metrics, without bound."""


def is_served_path(path: str) -> bool:
    return path in OPEN_PATHS or path in API_METHODS or path == "/schema.json" or path in _static_files()


@cache
def _static_files() -> frozenset[str]:
    """The Swagger page's files BentoML serves under /static_content/ (any other path there is unknown)."""
    from bentoml._internal import server

    assets = Path(server.__file__).parent / "static_content"
    return frozenset(f"{OPEN_PREFIXES[0]}{f.relative_to(assets).as_posix()}" for f in assets.rglob("*") if f.is_file())


def _masking_unknown_paths(call):
    """An ASGI `__call__` that sees UNKNOWN_PATH for a path the service does not serve."""

    async def masked_call(middleware, scope, receive, send):
        if scope.get("type") in ("http", "websocket") and not is_served_path(scope.get("path", "")):
            scope = {**scope, "path": UNKNOWN_PATH, "raw_path": UNKNOWN_PATH.encode(), "query_string": b""}
        return await call(middleware, scope, receive, send)

    masked_call.masks_unknown_paths = True
    return masked_call


def mask_unknown_paths_in_logs_and_metrics() -> None:
    """Wrap BentoML's metrics, tracing and access-log middlewares (the outer ones, before ours answers 404)
    so that an unknown path reaches each of them, whichever are enabled, as UNKNOWN_PATH. Once per process;
    BentoML has no setting for it (1.4)."""
    from bentoml._internal.server.http.access import AccessLogMiddleware
    from bentoml._internal.server.http.instruments import RunnerTrafficMetricsMiddleware
    from opentelemetry.instrumentation.asgi import OpenTelemetryMiddleware

    for middleware in (RunnerTrafficMetricsMiddleware, OpenTelemetryMiddleware, AccessLogMiddleware):
        if not getattr(middleware.__call__, "masks_unknown_paths", False):
            middleware.__call__ = _masking_unknown_paths(middleware.__call__)


def hide_library_deprecation_warnings() -> None:
    """BentoML 1.4 reads `model_fields` from a model instance on every request, which pydantic 2.11
    deprecates: a warning about BentoML's code in our service's log, nothing a user can act on. Called
    after the engine loaded (importing Feast resets warning filters)."""
    import warnings

    from pydantic.warnings import PydanticDeprecatedSince211

    warnings.filterwarnings("ignore", category=PydanticDeprecatedSince211, module=r"_bentoml_impl\.")


def filter_client_error_logs() -> None:
    """Put `ClientErrorLogFilter` on BentoML's request logger, once per process (each worker's service
    does it when it starts; importing this module does nothing)."""
    logger = logging.getLogger(BENTOML_REQUEST_LOGGER)
    if not any(isinstance(existing, ClientErrorLogFilter) for existing in logger.filters):
        logger.addFilter(ClientErrorLogFilter())


def _engine_answer(model: type[BaseModel], answer: dict) -> BaseModel:
    """The engine's answer as the documented response; a mismatch is our bug (500, logged), not a 400."""
    try:
        return model.model_validate(answer)
    except ValidationError as error:
        first = error.errors(include_input=False)[0]
        raise RuntimeError(f"the engine's answer does not match {model.__name__} ({error.error_count()} problems; "
                           f"first at {'.'.join(map(str, first['loc']))}: {first['msg']})") from None


def share_metrics_directory() -> None:
    """Point Feast's metrics at BentoML's Prometheus directory before Feast is imported. Otherwise each
    worker makes its own `feast_metrics_*` temporary directory, removed only at a normal exit: every
    worker BentoML kills or restarts left one behind (341 of them in /tmp here after a few days)."""
    bentoml_directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if bentoml_directory:
        os.environ.setdefault("PROMETHEUS_MULTIPROCESS_DIR", bentoml_directory)


class BearerTokenMiddleware:
    """In front of every route: 401 without the configured bearer token (checked first), 413 for a body
    over the limit (declared or streamed), 415 for a body that is not JSON, and the completed OpenAPI
    document at /docs.json. Probes and docs stay open."""

    def __init__(self, app) -> None:
        self.app = app
        self._digest: bytes | None = None

    def _expected_digest(self) -> bytes | str:
        """SHA-256 of the configured token (empty when none is set), read once; the configuration's error
        when it cannot be read (the service is not ready and says why at /readyz; nobody gets in)."""
        if self._digest is None:
            from cdp.config import ConfigError

            try:
                token = _settings().serving.api_token
            except ConfigError as error:
                return str(error)
            self._digest = hashlib.sha256(token.encode()).digest() if token else b""
        return self._digest

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = dict(scope.get("headers") or [])
        is_open = path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)
        if not is_open:  # who is asking first: a caller without the token learns nothing else, not even the limit
            if sum(name == b"authorization" for name, _ in scope.get("headers") or []) > 1:
                return await _reply_header_problem(send, "authorization", "send one Authorization header, not several")
            expected = self._expected_digest()
            if isinstance(expected, str):  # not "no token configured": the configuration is what is wrong
                return await _reply(send, 503, f"not ready: {expected}")
            if not expected:
                return await _reply(send, 401, "no API token configured: set serving.api_token (CDP_SERVING__API_TOKEN)",
                                    UNAUTHORIZED_HEADERS)
            if not bearer_token_matches(headers.get(b"authorization", b""), expected):
                return await _reply(send, 401, "missing or wrong bearer token (send `Authorization: Bearer <token>`)",
                                    UNAUTHORIZED_HEADERS)
        declared = headers.get(b"content-length", b"0").strip()
        if not declared.isdigit():
            return await _reply_header_problem(send, "content-length", "the Content-Length header is not a number")
        if int(declared) > MAX_BODY_BYTES:
            return await _reply(send, 413, BODY_TOO_LARGE)
        if path in OPEN_PATHS and scope.get("method") not in ("GET", "HEAD"):  # BentoML's own 405 is plain text
            return await _reply(send, 405, f"{path} takes GET", ((b"allow", b"GET, HEAD"),))
        if path == "/docs.json" and scope.get("method") in ("GET", "HEAD"):
            return await _reply_json(send, 200, openapi_document())
        if path == "/docs" and scope.get("method") in ("GET", "HEAD"):
            return await _redirect(send, "/")
        if path == "/" and scope.get("method") in ("GET", "HEAD"):  # BentoML's page loads Google Tag Manager
            return await _reply_content(send, 200, DOCS_PAGE, b"text/html; charset=utf-8")
        if path in API_METHODS and scope.get("method") != API_METHODS[path]:
            return await _reply(send, 405, f"{path} takes {API_METHODS[path]}", ((b"allow", API_METHODS[path].encode()),))
        if not is_served_path(path):  # BentoML's client reads /schema.json
            return await _reply(send, 404, "no such endpoint; the API is documented at /docs")
        if is_open:
            return await self.app(scope, receive, send)
        media_type = headers.get(b"content-type", b"application/json").partition(b";")[0].strip().lower()
        if media_type != b"application/json":
            return await _reply(send, 415, "send the body as JSON, with `Content-Type: application/json`")
        if headers.get(b"content-encoding", b"identity").strip().lower() != b"identity":
            return await _reply(send, 415, "send the body uncompressed (no Content-Encoding)")
        body, complete = await _read_body(receive, MAX_BODY_BYTES)
        if not complete:
            return None if body is None else await _reply(send, 413, BODY_TOO_LARGE)
        return await self.app(scope, _replay(body, receive), send)


def bearer_token_matches(authorization: bytes, expected_digest: bytes) -> bool:
    """`Authorization: Bearer <token>` against the configured token's digest. Digests of equal length
    are compared with hmac.compare_digest, so the time taken says nothing about the token, not even its
    length; the scheme name is case-insensitive (RFC 7235)."""
    scheme, _, token = authorization.strip().partition(b" ")
    given = token.strip() if scheme.lower() == b"bearer" else b""
    return hmac.compare_digest(hashlib.sha256(given).digest(), expected_digest)


async def _read_body(receive, limit: int) -> tuple[bytes | None, bool]:
    """The whole request body, or (what was read, False) once it passes `limit` bytes — a chunked body or
    a short Content-Length cannot slip past the limit; (None, False) when the client went away."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None, False
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return b"", False
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks), True


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body already read, then the client's own messages."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed


async def _redirect(send, location: str) -> None:
    """/docs, which `cdp serve` prints, to BentoML's Swagger UI (it serves it at /)."""
    await send({"type": "http.response.start", "status": 307,
                "headers": [(b"location", location.encode()), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


async def _reply_content(send, status: int, body: bytes, content_type: bytes) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _reply(send, status: int, message: str, headers: tuple = ()) -> None:
    await _reply_json(send, status, {"error": message}, headers)


async def _reply_header_problem(send, header: str, message: str) -> None:
    """400 for a malformed header, in the documented shape of every 400 (ValidationErrorResponse)."""
    await _reply_json(send, 400, {"error": message, "detail": [{"type": "header", "loc": ["header", header],
                                                                 "msg": message}]})


async def _reply_json(send, status: int, document: dict, headers: tuple = ()) -> None:
    body = json.dumps(document).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


def _settings():
    from pathlib import Path

    from cdp.config import find_config_file, load_settings
    from cdp.workspace import Workspace

    workspace = Workspace.at(os.environ.get(WORKSPACE_VARIABLE))
    explicit = os.environ.get(CONFIG_VARIABLE)
    return load_settings(find_config_file(workspace.root, Path(explicit) if explicit else None))


NO_TRACING = {"excluded_urls": [".*"]}


def _service_options() -> dict:
    """BentoML options from `serving`: the worker count, and tracing only when `serving.tracing` is on.
    When the configuration cannot be read here: 1 worker, no tracing (the worker then reports the error
    at /readyz instead of failing to import, which would be a crash loop)."""
    try:
        serving = _settings().serving
    except Exception as error:  # any configuration error: said at /readyz, not fatal here
        log.error("serving settings unreadable (%s); starting 1 worker", error)
        return {"workers": 1, "tracing": NO_TRACING}
    return {"workers": serving.workers, "tracing": {} if serving.tracing else NO_TRACING}


LOOP_CUSTOMERS = 10
"""Requests of up to this many customers are computed on the worker's event loop, larger ones in a thread."""


async def _in_thread(function, *arguments):
    """`function(*arguments)` in a worker thread, awaited (anyio's, as BentoML's sync APIs use)."""
    import anyio.to_thread

    return await anyio.to_thread.run_sync(function, *arguments)


@bentoml.service(name="cdp_recommendations", traffic={"timeout": 30}, **_service_options())
class RecommendationService:
    def __init__(self) -> None:
        from cdp.workspace import Workspace
        from serving.engine import EngineNotReadyError, RecommendationEngine, freeze_loaded_objects

        self.engine = None
        # One request at a time uses the engine (its online store connection is shared). Requests take
        # turns on the event loop (`engine_turn`), so waiting ones hold no thread; the one whose turn it
        # is runs on the loop (a small /recommend) or in a thread (a large one, /events) and holds
        # `engine_lock`, which the probes' store re-check (in BentoML's threads) also takes, or skips.
        self.engine_turn = asyncio.Lock()
        self.engine_lock = threading.Lock()
        self.startup_problems: list[str] = []
        filter_client_error_logs()
        mask_unknown_paths_in_logs_and_metrics()
        share_metrics_directory()
        from cdp.config import ConfigError

        try:
            self.engine = RecommendationEngine.load(Workspace.at(os.environ.get(WORKSPACE_VARIABLE)), _settings())
            self.engine.readiness()
        except (EngineNotReadyError, FileNotFoundError, OSError, ConfigError) as error:
            # said at /readyz (503), not raised: BentoML would restart the worker again and again, and log
            # the traceback, whose pydantic part quotes the values (a Redis URL with its password)
            self.startup_problems = [str(error)]
        hide_library_deprecation_warnings()
        for problem in self._problems():
            log.error("not ready: %s", problem)
        # Everything loaded so far lives as long as the worker: out of the garbage collector's sight,
        # a full collection no longer walks ~590,000 objects (it stalled a request every minute or so
        # for about 330 ms at 200 requests/s).
        freeze_loaded_objects()

    def _problems(self) -> list[str]:
        return self.engine.problems if self.engine is not None else self.startup_problems

    def __is_ready__(self) -> bool:
        """Ready when the models and the online store are. Otherwise /readyz answers 503 with what is
        missing and the command that fixes it, and the process keeps running (no crash loop)."""
        if self.engine is not None and self.engine_lock.acquire(blocking=False):  # busy: checked by that request
            try:
                self.engine.follow_reloads()
                self.engine.recheck_store()
            finally:
                self.engine_lock.release()
        if not self._problems():
            return True
        from starlette.exceptions import HTTPException

        detail = json.dumps({"ready": False, "problems": self._problems()})
        raise HTTPException(503, detail=detail, headers={"content-type": "application/json"})

    def _ready_engine(self, models: bool = True):
        """The engine, having followed any reload another worker announced; EngineNotReadyError with
        the problems /readyz names when it cannot answer (`models=False`: only the online store needed)."""
        from serving.engine import EngineNotReadyError

        if self.engine is None:
            raise EngineNotReadyError("not ready", self.startup_problems)
        self.engine.follow_reloads()
        self.engine.require_ready(models)
        return self.engine

    # Each API answers a JSONResponse instead of its model when not ready: BentoML passes it through.
    # `recommend` is a coroutine on purpose. A request of a few customers is computed on the worker's
    # event loop, not in a thread: the work is CPU-bound Python, so a thread gained nothing under the
    # GIL and cost a hand-off (about 10% of the CPU a request), and a worker busy answering stops
    # accepting, so a client's next connection lands on the idle worker. Measured at 300 requests/s
    # (docs/serving.md): p99 13.4 and 23.5 ms in a thread, 8.1 and 8.7 ms on the loop. A larger request
    # (up to 1,000 customers, a few hundred ms) goes to a thread, so that probes are not held for its
    # whole duration; so does a small one whose turn comes while a probe re-checks the store (the loop
    # never waits for `engine_lock`).
    @bentoml.api(route="/recommend", input_spec=RecommendRequest)
    async def recommend(self, customers: list[CustomerReference],
                        context: RecommendContext | None = None) -> RecommendResponse:
        """Next-best action, win-back decision, scores and reasons per customer, in request order."""
        references = [c.model_dump(exclude_none=True) for c in customers]
        given = context.model_dump(exclude_none=True) if context else None
        async with self.engine_turn:  # requests wait on the loop, in order, not in threads
            if len(references) <= LOOP_CUSTOMERS and self.engine_lock.acquire(blocking=False):
                try:
                    return self._recommend(references, given)
                finally:
                    self.engine_lock.release()
            return await _in_thread(self._with_engine_lock, self._recommend, references, given)

    def _with_engine_lock(self, work, *arguments):
        with self.engine_lock:
            return work(*arguments)

    def _recommend(self, references: list[dict], given: dict | None):
        """Call with `engine_lock` held."""
        from serving.engine import EngineNotReadyError

        try:  # not ready: before, or the online store failing during this request
            engine = self._ready_engine()
            answers = engine.recommend(references, given)
        except EngineNotReadyError as error:
            return _not_ready(error)
        # --- audit (serving/audit.py, docs/privacy.md): one pseudonymous line per answer, one append ---
        from serving.audit import record_recommendations
        record_recommendations(engine, answers, given)
        # --- end audit ---
        return _engine_answer(RecommendResponse, {"recommendations": answers})

    @bentoml.api(route="/events", input_spec=EventsRequest)
    async def events(self, events: list[SignalUpdate]) -> EventsResponse:
        """Push fresh signals (a consent withdrawal, an order, an app open) to the online store now.
        Several events for one customer are merged in order (a later field wins) into one push. Needs
        the online store only: a consent withdrawal gets through while a model is missing."""
        updates = [e.model_dump(exclude_none=True) for e in events]
        async with self.engine_turn:  # in a thread: a push waits on file locks
            return await _in_thread(self._with_engine_lock, self._push, updates)

    def _push(self, updates: list[dict]):
        """Call with `engine_lock` held."""
        from serving.engine import EngineNotReadyError

        try:  # not ready: before, or the online store failing during this push
            engine = self._ready_engine(models=False)
            pushed = engine.apply_events(updates)
        except EngineNotReadyError as error:
            return _not_ready(error)
        # --- audit (serving/audit.py, docs/privacy.md): each consent change applied, pseudonymous ---
        from serving.audit import record_consent_changes
        record_consent_changes(engine.workspace, engine.settings.privacy, updates, "POST /events",
                               refused=pushed.refused, redirected=pushed.redirected, pending=pushed.pending)
        # --- end audit ---
        return EventsResponse(
            accepted=pushed.accepted, milliseconds=round(pushed.seconds * 1000, 1),
            refused=[RefusedCustomer(customer_id=c, reason=r) for c, r in pushed.refused.items()],
            redirected=[RedirectedCustomer(customer_id=c, applied_to=t) for c, t in pushed.redirected.items()],
            dropped_fields=[DroppedField(customer_id=c, field=f, reason=r) for c, f, r in pushed.dropped_fields])

    @bentoml.api(route="/admin/reload", input_spec=ReloadRequest)
    def reload(self) -> ReloadResponse:
        """Load the registry's current champions in this worker and announce the reload to every other
        worker (each loads them in the background and swaps); no request in flight is dropped. Allowed
        while not ready: a champion registered since start-up is how the service becomes ready."""
        if self.engine is None:
            from serving.engine import EngineNotReadyError

            return _not_ready(EngineNotReadyError("not ready", self.startup_problems))
        versions, generation = self.engine.reload()
        message = (f"this worker loaded the registry's champions and announced reload generation {generation}: "
                   "every other worker loads them in the background at its next request or probe and swaps them "
                   "in, answering meanwhile with the models it has")
        return _engine_answer(ReloadResponse, {"model_versions": versions, "problems": self.engine.problems,
                                               "generation": generation, "message": message})


RecommendationService.add_asgi_middleware(BearerTokenMiddleware)

# --- the OpenAPI document: BentoML's, completed with what it cannot know ---
BEARER_SCHEME = "bearerAuth"
TEXT = {"text/plain": {"schema": {"type": "string"}}}
API_ERRORS = {
    "400": ("The body is not JSON or does not match the request schema, or a header is malformed (a Content-Length "
            "that is not a number, several Authorization headers).", ValidationErrorResponse),
    "401": ("No bearer token, a wrong one, or none configured on the server.", ErrorResponse),
    "413": (f"The body is over {MAX_BODY_BYTES:,} bytes.", ErrorResponse),
    "415": ("The body is not sent as `application/json`, or is compressed.", ErrorResponse),
    "500": ("A bug on our side; the server log has the details.", ErrorResponse),
    "503": ("Not ready: a champion model or the online store is missing; the problems /readyz names.",
            UnavailableResponse),
}
DESCRIPTION = ("Next-best actions, win-back decisions, scores and reasons per customer (POST /recommend), fresh "
               "signals into the online store (POST /events) and champion reloads (POST /admin/reload). Send "
               "`Authorization: Bearer <serving.api_token>`; the probes, /metrics and these docs are open.")
PROBE_RESPONSES = {
    "/healthz": {"200": {"description": "Alive.", "content": TEXT}},
    "/livez": {"200": {"description": "Alive.", "content": TEXT}},
    "/readyz": {"200": {"description": "Ready: champion models and the online store loaded.", "content": TEXT},
                "503": {"description": "Not ready: what is missing and the command that fixes it.", "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/NotReadyResponse"}}}}},
    "/metrics": {"200": {"description": "Prometheus metrics.", "content": TEXT}},
}


@cache
def openapi_document() -> dict:
    """What GET /docs.json serves (built once per process)."""
    return complete_openapi_document(RecommendationService.openapi_spec.asdict())


def complete_openapi_document(generated: dict) -> dict:
    """BentoML documents every API with a generic 400/404/500 whose 400 body does not match what it
    sends, and knows nothing of our middleware. Say what the service really answers: the response
    models, 400 with pydantic's issues, 401 with the bearer scheme, 413, 503; probes are open, plain text."""
    document = json.loads(json.dumps(generated))
    # pydantic's schemas are JSON Schema 2020-12 (an optional field is `anyOf [..., {"type": "null"}]`):
    # valid OpenAPI 3.1, not the 3.0 BentoML declares, which client generators would then refuse
    document["openapi"] = "3.1.0"
    document["info"] = {**document.get("info", {}), "version": package_version() or "0+unknown", "description": DESCRIPTION}
    components = document.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):
        schemas.pop(name, None)
    for model in (ErrorResponse, UnavailableResponse, ValidationErrorResponse, NotReadyResponse):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
    components["securitySchemes"] = {BEARER_SCHEME: {
        "type": "http", "scheme": "bearer",
        "description": "The token from `serving.api_token` (env CDP_SERVING__API_TOKEN)."}}
    for path, item in document["paths"].items():
        for operation in item.values():
            if "x-bentoml-name" not in operation:
                operation["security"] = []
                operation["responses"] = PROBE_RESPONSES.get(path, operation["responses"])
                continue
            operation["security"] = [{BEARER_SCHEME: []}]
            # BentoML flattens the request schema, keeping the first member of each anyOf (so an optional
            # field loses its null); its own component for the input keeps them. The body is required
            # when that schema requires a field.
            request_model = REQUEST_MODELS.get(operation["x-bentoml-name"])
            request = schemas.get(request_model.__name__) if request_model is not None else None
            if request is not None:
                operation["requestBody"] = {"required": bool(request.get("required")), "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{request_model.__name__}"}}}}
            responses = {str(code): answer for code, answer in operation["responses"].items() if str(code).startswith("2")}
            for code, (description, model) in API_ERRORS.items():
                responses[code] = {"description": description, "content": {
                    "application/json": {"schema": {"$ref": f"#/components/schemas/{model.__name__}"}}}}
            responses["401"]["headers"] = {"WWW-Authenticate": {"schema": {"type": "string"}}}
            operation["responses"] = responses
    return document
