"""The inference gateway: the only way a caller reaches a sandboxed model.

Per request, in this order (each step refuses before the next runs):

1. **Identity** (401): ``Authorization: Bearer`` with a JWT or a ``mamori_`` API token, verified
   by the same code the service uses (:func:`authenticator`).
2. **Cedar ``invoke``** (403) on the packaged ``serving`` policies: the caller's roles, and
   model lineage: a model whose :class:`ModelCard` carries labels (``phi``) answers only a
   principal entitled to every label. Every decision, allow or deny, is audited with the
   policy ids that made it; an allow that cannot be audited is not given.
3. **MLDR standing** (403 for a blocked key, 429 with ``Retry-After`` while throttled).
4. **Token buckets** (429 with ``Retry-After``): one per key and one global; a row costs one
   token.
5. **Predict** in the sandbox (one request at a time on its pipes), then **MLDR** observes every
   row with the full answer; its events go to the audit log and the metrics.
6. **Output hardening** after MLDR saw the full answer: top-1 only, and/or rounded scores.

The key MLDR and the buckets track is the verified principal ("issuer|subject"), never
anything the caller writes in the body.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from fastapi import FastAPI, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from pydantic import BaseModel, ConfigDict, Field

from mamori.audit import AuditLog
from mamori.errors import IdentityError, MamoriError
from mamori.identity.apitokens import is_api_token
from mamori.identity.jwt import VerifierConfig, verify_token
from mamori.identity.principal import Principal
from mamori.policy import Entity, EntityUid, PolicyEngine
from mamori.policy import Request as CedarRequest
from mamori.serving.mldr import MldrEvent, MldrInputError, Monitor
from mamori.serving.mldr import Response as MldrResponse

__all__ = [
    "Gateway",
    "GatewayConfig",
    "InvokeBody",
    "ModelCard",
    "OutputPolicy",
    "Predictor",
    "TokenBucket",
    "authenticator",
    "create_app",
    "handle_invoke",
]

_log = structlog.get_logger("mamori.serving.gateway")
_MAX_CREDENTIAL = 16 * 1024


class Predictor(Protocol):
    """What the gateway calls: a :class:`~mamori.serving.SandboxedModel` in production."""

    def predict(self, inputs: Any) -> Any:
        """Outputs for a batch of input rows."""


class TokenVerifier(Protocol):
    """The API-token half of authentication (:class:`mamori.store.apitokens.ApiTokens`)."""

    def verify(self, secret: str) -> Principal:
        """The principal an API token stands for; raises ``IdentityError``."""


def authenticator(
    verifier: VerifierConfig, tokens: TokenVerifier | None = None
) -> Callable[[str], Principal]:
    """The service's authentication: a ``mamori_`` API token, else a JWT."""

    def authenticate(credential: str) -> Principal:
        if is_api_token(credential):
            if tokens is None:
                raise IdentityError("API tokens are not accepted by this gateway")
            return tokens.verify(credential)
        return verify_token(credential, verifier)

    return authenticate


@dataclass(frozen=True, slots=True)
class ModelCard:
    """The served model and the lineage labels a caller must be entitled to.

    The labels come from the registry binding or the model's metadata (e.g. ``phi`` for a
    model fine-tuned on protected health information), never from the caller.
    """

    name: str
    digest: str
    labels: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class OutputPolicy:
    """Output hardening: fewer bits per answer for extraction and inversion to use."""

    top1: bool = False
    """Answer only the top class of a score vector, never the scores."""
    decimals: int | None = None
    """Round scores to this many decimals."""

    def apply(self, row: Any) -> Any:
        """Harden one output row (a score vector or a scalar label)."""
        if not isinstance(row, list):
            return row
        if self.top1:
            return {"label": max(range(len(row)), key=row.__getitem__)} if row else row
        if self.decimals is not None:
            return [round(float(v), self.decimals) for v in row]
        return row


class TokenBucket:
    """A token bucket: ``rate`` tokens per second, at most ``burst`` banked."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float]) -> None:
        """Start full."""
        if rate <= 0 or burst < 1:
            msg = f"a token bucket needs rate > 0 and burst >= 1, got {rate!r}, {burst!r}"
            raise ValueError(msg)
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens, self._at = burst, clock()

    def take(self, cost: float) -> float:
        """Take ``cost`` tokens; 0.0 on success, else the seconds until they will be there."""
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if cost > self.burst:
            return math.inf
        if self._tokens >= cost:
            self._tokens -= cost
            return 0.0
        return (cost - self._tokens) / self.rate


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """Quotas and hardening of one gateway."""

    key_rate: float = 20.0
    key_burst: float = 40.0
    global_rate: float = 500.0
    global_burst: float = 1_000.0
    max_rows: int = 256
    max_keys: int = 100_000
    output: OutputPolicy = field(default_factory=OutputPolicy)


class Gateway:
    """The library behind :func:`create_app`: identity, policy, MLDR, quotas, hardening."""

    def __init__(
        self,
        model: Predictor,
        card: ModelCard,
        *,
        authenticate: Callable[[str], Principal],
        audit: AuditLog,
        monitor: Monitor | None = None,
        engine: PolicyEngine | None = None,
        config: GatewayConfig | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Wire a gateway; ``engine`` defaults to the packaged ``serving`` policies."""
        self.model, self.card, self.audit = model, card, audit
        self.monitor = monitor or Monitor(clock=clock)
        self.engine = engine or PolicyEngine.packaged("serving")
        self.config = config or GatewayConfig()
        self._authenticate, self._clock = authenticate, clock
        self._lock = threading.Lock()  # the sandbox answers one request at a time
        self._buckets: dict[str, TokenBucket] = {}
        self._global = TokenBucket(self.config.global_rate, self.config.global_burst, clock)
        self._bucket_lock = threading.Lock()
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mamori_gateway_requests",
            "Inference requests by outcome",
            ["outcome"],
            registry=self.registry,
        )
        self.events = Counter(
            "mamori_mldr_events",
            "MLDR events by detector and response",
            ["detector", "response"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mamori_gateway_seconds",
            "Gateway time per request, model excluded",
            registry=self.registry,
        )

    def principal(self, header: str | None) -> Principal:
        """Verify ``Authorization: Bearer <token>``; ``IdentityError`` (401) on any failure."""
        if header is None:
            raise IdentityError("missing Authorization header; send 'Bearer <token>'")
        scheme, _, credential = header.partition(" ")
        credential = credential.strip()
        if scheme.lower() != "bearer" or not credential:
            raise IdentityError("the Authorization header must be 'Bearer <token>'")
        if len(credential) > _MAX_CREDENTIAL:
            raise IdentityError("bearer token is too long")
        return self._authenticate(credential)

    def authorize(self, principal: Principal) -> tuple[bool, tuple[str, ...], str]:
        """Cedar ``invoke`` on this model, audited; (allowed, policy ids, reason)."""
        user = EntityUid("Mamori::User", f"{principal.issuer}|{principal.subject}")
        model = EntityUid("Mamori::Model", self.card.digest)
        entitled = frozenset(principal.attributes.get("entitlements", "").split())
        entities = [
            Entity(
                user,
                {"subject": user.id, "entitlements": entitled},
                tuple(EntityUid("Mamori::Role", r) for r in sorted(principal.roles)),
            ),
            *(Entity(EntityUid("Mamori::Role", r)) for r in sorted(principal.roles)),
            Entity(
                model,
                {"name": self.card.name, "digest": self.card.digest, "labels": self.card.labels},
            ),
        ]
        decision = self.engine.decide(
            CedarRequest(user, EntityUid("Mamori::Action", "invoke"), model), entities
        )
        # An allow that is not on the record is not given: a failing audit log raises here.
        self.audit.record(
            principal=user.id,
            action="invoke",
            resource=f"model:{self.card.name}@{self.card.digest}",
            decision="allow" if decision.allowed else "deny",
            policy_ids=decision.policy_ids,
            reason=decision.reason,
        )
        return decision.allowed, decision.policy_ids, decision.reason

    def admit(self, key: str, rows: int) -> float:
        """Charge ``rows`` tokens to the key's and the global bucket; 0.0 or a retry delay."""
        with self._bucket_lock:
            bucket = self._buckets.get(key)
            if bucket is None:
                if len(self._buckets) >= self.config.max_keys:
                    self._buckets.pop(next(iter(self._buckets)))
                bucket = TokenBucket(self.config.key_rate, self.config.key_burst, self._clock)
                self._buckets[key] = bucket
            wait = bucket.take(rows)
            if wait:
                return wait
            return self._global.take(rows)

    def predict(self, key: str, rows: Sequence[Sequence[float]]) -> list[Any]:
        """Run the model, let MLDR see every full answer, then harden the outputs."""
        with self._lock:
            outputs = self.model.predict([list(r) for r in rows])
        if not isinstance(outputs, list) or len(outputs) != len(rows):
            raise MamoriError("the model answered a different number of rows than it was sent")
        for row, out in zip(rows, outputs, strict=True):
            label, confidence = _label_of(out)
            for event in self.monitor.observe(key, row, label, confidence):
                self._record(event)
        return [self.config.output.apply(out) for out in outputs]

    def _record(self, event: MldrEvent) -> None:
        self.events.labels(event.detector.value, event.response.value).inc()
        _log.warning(
            "mldr_event",
            detector=event.detector.value,
            key=event.key,
            atlas=list(event.atlas),
            response=event.response.value,
            query=event.query,
        )
        self.audit.record(
            principal=event.key,
            action=f"mldr.{event.detector.value}",
            resource=f"model:{self.card.name}@{self.card.digest}",
            decision=event.response.value,
            policy_ids=event.atlas,
            reason=event.message,
        )


def _label_of(out: Any) -> tuple[int, float | None]:
    """The top label and its confidence from one output row (scores or a scalar label)."""
    if isinstance(out, list) and out and all(isinstance(v, int | float) for v in out):
        top = max(range(len(out)), key=out.__getitem__)
        score = float(out[top])
        return top, score if 0.0 <= score <= 1.0 else None
    if isinstance(out, int | float) and not isinstance(out, bool) and float(out).is_integer():
        return int(out), None
    # The model's fault, not the caller's: a 502, and nothing reaches the caller unwatched.
    raise MamoriError("the model's output is neither a score vector nor an integer label")


class InvokeBody(BaseModel):
    """``POST /v1/invoke``: a batch of numeric input rows."""

    model_config = ConfigDict(extra="forbid")
    inputs: list[list[float]] = Field(min_length=1)


def _problem(status: int, detail: str, retry_after: float | None = None) -> JSONResponse:
    headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
    return JSONResponse({"status": status, "detail": detail}, status, headers=headers)


def create_app(gateway: Gateway) -> FastAPI:
    """The HTTP surface: ``POST /v1/invoke`` and ``GET /metrics``."""
    app = FastAPI(title="mamori inference gateway", openapi_url=None)

    @app.post("/v1/invoke")
    async def invoke(body: InvokeBody, request: Request) -> Response:
        started = time.perf_counter()
        response = await run_in_threadpool(
            handle_invoke, gateway, body, request.headers.get("authorization")
        )
        gateway.latency.observe(time.perf_counter() - started)
        return response

    @app.get("/metrics")
    async def metrics() -> Response:
        return Response(generate_latest(gateway.registry), media_type="text/plain; version=0.0.4")

    return app


def handle_invoke(  # noqa: PLR0911 - one return per refusal, in the documented order
    gateway: Gateway, body: InvokeBody, header: str | None
) -> Response:
    """The request path of ``POST /v1/invoke`` without the HTTP layer (steps 1-6 above)."""
    outcome = gateway.requests
    if len(body.inputs) > gateway.config.max_rows:
        outcome.labels("too_large").inc()
        return _problem(413, f"at most {gateway.config.max_rows} rows per request")
    try:
        principal = gateway.principal(header)
    except IdentityError as exc:
        outcome.labels("unauthenticated").inc()
        return _problem(401, str(exc))
    allowed, policy_ids, reason = gateway.authorize(principal)
    if not allowed:
        outcome.labels("denied").inc()
        return _problem(403, f"invoke denied: {reason} ({', '.join(policy_ids) or 'no permit'})")
    key = f"{principal.issuer}|{principal.subject}"
    standing = gateway.monitor.standing(key)
    if standing.response is MldrResponse.BLOCK:
        outcome.labels("blocked").inc()
        return _problem(403, "this caller is blocked by MLDR; an operator must lift the block")
    if standing.response is MldrResponse.THROTTLE:
        outcome.labels("throttled").inc()
        return _problem(429, "this caller is throttled by MLDR", standing.retry_after)
    wait = gateway.admit(key, len(body.inputs))
    if wait:
        outcome.labels("rate_limited").inc()
        return _problem(429, "rate limit exceeded", wait)
    try:
        outputs = gateway.predict(key, body.inputs)
    except MldrInputError as exc:
        outcome.labels("bad_input").inc()
        return _problem(422, str(exc))
    except MamoriError as exc:
        outcome.labels("model_error").inc()
        raise HTTPException(502, f"the model failed: {exc}") from exc
    outcome.labels("ok").inc()
    return JSONResponse({"outputs": outputs})
