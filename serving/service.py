"""The BentoML service campaign tools call: it parses, calls the engine, and formats — no logic.

Start it with `cdp serve --workspace W --port N` (or `bentoml serve serving.service:RecommendationService`
with CDP_WORKSPACE set). Endpoints: POST /recommend, POST /events, POST /admin/reload; GET /healthz,
/readyz (BentoML's probes; /readyz fails with the reason while models or the online store are
missing) and /docs (OpenAPI). Everything but the probes and docs needs `Authorization: Bearer <token>`
with the token from `serving.api_token` (env CDP_SERVING__API_TOKEN).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
from typing import Annotated, Literal

import bentoml
from pydantic import BaseModel, ConfigDict, Field, model_validator

log = logging.getLogger("cdp.serving")
WORKSPACE_VARIABLE = "CDP_WORKSPACE"
CONFIG_VARIABLE = "CDP_CONFIG_FILE"
OPEN_PATHS = ("/healthz", "/livez", "/readyz", "/metrics", "/docs", "/docs.json", "/static_content")
MAX_BODY_BYTES = 1_000_000
Channel = Literal["email", "push", "sms"]


class CustomerReference(BaseModel):
    """Exactly one way to name a customer: our customer_id, a source system's id, or an e-mail."""

    model_config = ConfigDict(extra="forbid")
    customer_id: str | None = Field(None, min_length=1, max_length=64)
    source: str | None = Field(None, min_length=1, max_length=32)
    source_id: str | None = Field(None, min_length=1, max_length=128)
    email: str | None = Field(None, min_length=3, max_length=254)

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
    campaign_id: str | None = Field(None, max_length=128, description="Holdout assignment is per (customer, campaign).")
    campaign_type: str | None = Field(None, max_length=64)
    allowed_channels: list[Channel] | None = Field(None, max_length=3, description="Restrict the channels considered.")


class SignalUpdate(BaseModel):
    """Fresh behaviour or a consent change for one customer (fields of the realtime_signals view)."""

    model_config = ConfigDict(extra="forbid")
    customer_id: str = Field(..., min_length=1, max_length=64)
    latest_email_consent: Literal[0, 1] | None = None
    latest_push_consent: Literal[0, 1] | None = None
    latest_sms_consent: Literal[0, 1] | None = None
    latest_app_installed: Literal[0, 1] | None = None
    last_order_epoch_seconds: int | None = Field(None, ge=0, le=10**10)
    last_visit_epoch_seconds: int | None = Field(None, ge=0, le=10**10)
    last_app_open_epoch_seconds: int | None = Field(None, ge=0, le=10**10)


class BearerTokenMiddleware:
    """401 without the configured bearer token (compared in constant time); 413 for oversized bodies.
    Probes and API docs stay open."""

    def __init__(self, app) -> None:
        self.app = app
        self._token: bytes | None = None

    def _expected(self) -> bytes | None:
        if self._token is None:
            token = _settings().serving.api_token
            self._token = token.encode() if token else b""
        return self._token or None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > MAX_BODY_BYTES:
            return await _reply(send, 413, f"request body over {MAX_BODY_BYTES} bytes")
        if path == "/" or path.startswith(OPEN_PATHS):
            return await self.app(scope, receive, send)
        expected = self._expected()
        if expected is None:
            return await _reply(send, 401, "no API token configured: set serving.api_token (CDP_SERVING__API_TOKEN)")
        given = headers.get(b"authorization", b"")
        if not hmac.compare_digest(given, b"Bearer " + expected):
            return await _reply(send, 401, "missing or wrong bearer token")
        return await self.app(scope, receive, send)


async def _reply(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def _settings():
    from pathlib import Path

    from cdp.config import find_config_file, load_settings
    from cdp.workspace import Workspace

    workspace = Workspace.at(os.environ.get(WORKSPACE_VARIABLE))
    explicit = os.environ.get(CONFIG_VARIABLE)
    return load_settings(find_config_file(workspace.root, Path(explicit) if explicit else None))


def _configured_workers() -> int:
    """`serving.workers`; 1 when the configuration cannot be read here (the worker then reports the
    error at /readyz instead of failing to import, which would be a crash loop)."""
    try:
        return _settings().serving.workers
    except Exception as error:  # any configuration error: said at /readyz, not fatal here
        log.error("serving.workers unreadable (%s); starting 1 worker", error)
        return 1


@bentoml.service(name="cdp_recommendations", workers=_configured_workers(), traffic={"timeout": 30})
class RecommendationService:
    def __init__(self) -> None:
        from cdp.workspace import Workspace
        from serving.engine import EngineNotReadyError, RecommendationEngine

        self.engine = None
        self.problems: list[str] = []
        try:
            self.engine = RecommendationEngine.load(Workspace.at(os.environ.get(WORKSPACE_VARIABLE)), _settings())
            self.problems = self.engine.readiness()
        except (EngineNotReadyError, FileNotFoundError, OSError) as error:
            self.problems = [str(error)]
        for problem in self.problems:
            log.error("not ready: %s", problem)

    def __is_ready__(self) -> bool:
        """Ready when the models and the online store are. Otherwise /readyz answers 503 with what is
        missing and the command that fixes it, and the process keeps running (no crash loop)."""
        if self.engine is not None and not self.problems:
            return True
        from starlette.exceptions import HTTPException

        detail = json.dumps({"ready": False, "problems": self.problems})
        raise HTTPException(503, detail=detail, headers={"content-type": "application/json"})

    def _engine(self):
        if self.engine is None:
            raise bentoml.exceptions.ServiceUnavailable("not ready: " + "; ".join(self.problems))
        return self.engine

    @bentoml.api(route="/recommend")
    def recommend(
        self,
        customers: Annotated[list[CustomerReference], Field(min_length=1, max_length=1000)],
        context: RecommendContext | None = None,
    ) -> dict:
        """Next-best action, win-back decision, scores and reasons per customer, in request order."""
        references = [c.model_dump(exclude_none=True) for c in customers]
        answers = self._engine().recommend(references, context.model_dump(exclude_none=True) if context else None)
        # --- audit (serving/audit.py, docs/privacy.md): one pseudonymous line per answer, one append ---
        from serving.audit import record_recommendations
        record_recommendations(self._engine(), answers, context.model_dump(exclude_none=True) if context else None)
        # --- end audit ---
        return {"recommendations": answers}

    @bentoml.api(route="/events")
    def events(self, events: Annotated[list[SignalUpdate], Field(min_length=1, max_length=1000)]) -> dict:
        """Push fresh signals (a consent withdrawal, an order, an app open) to the online store now."""
        import pandas as pd

        frame = pd.DataFrame([e.model_dump(exclude_none=True) for e in events])
        seconds = self._engine().push_events(frame)
        return {"accepted": len(events), "milliseconds": round(seconds * 1000, 1)}

    @bentoml.api(route="/admin/reload")
    def reload(self) -> dict:
        """Load the registry's current champions without dropping requests in flight."""
        versions = self._engine().reload()
        self.problems = self._engine().readiness()
        return {"model_versions": versions, "problems": self.problems}


RecommendationService.add_asgi_middleware(BearerTokenMiddleware)
