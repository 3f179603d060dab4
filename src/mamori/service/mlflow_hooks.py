"""MLflow routes: the webhook receiver, the promotion gate and break-glass grants.

``POST /v1/hooks/mlflow`` reads the raw body first, verifies the HMAC over those exact bytes,
the replay window and the delivery id, stores the delivery (outbox) and answers 202; the work
runs behind a doorbell (one Huey task per delivery when the service uses the job queue,
else a thread here). ``GET /v1/gate/binding`` is what the
``mamori-gate`` plugin asks. ``POST /v1/hooks/mlflow/break-glass`` records an audited,
time-limited exception (admin, MFA, reason).

``create_app`` includes it; ``create_app(mlflow_doorbell=...)`` replaces the doorbell.
"""

from __future__ import annotations

import functools
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from http import HTTPStatus
from typing import Annotated, Final

import anyio.to_thread
import structlog
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mamori.errors import MamoriError, RegistryError
from mamori.identity.apitokens import Scope
from mamori.identity.network import RouteGroup
from mamori.identity.principal import Principal
from mamori.lifecycle.mlflow.gate import (
    PromotionDecision,
    decide_promotion,
    grant_break_glass,
)
from mamori.lifecycle.mlflow.identity import RegistryFacts, VersionIdentity
from mamori.lifecycle.mlflow.webhook import parse_event, verify_delivery
from mamori.service.auth import network_guard, requires, scoped_principal
from mamori.service.problems import problem
from mamori.service.runtime import Runtime

__all__ = ["BreakGlassIn", "BreakGlassOut", "Doorbell", "PromotionOut", "mlflow_router"]

_log = structlog.get_logger("mamori.mlflow")
_MAX_BODY: Final = 1 << 20  # MLflow events are small JSON documents


class PromotionOut(BaseModel):
    """The gate's answer for one promotion."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    allowed: bool
    reason: str
    break_glass: bool


class BreakGlassIn(BaseModel):
    """A request for a time-limited exception for one exact version and alias."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=512)
    version: str = Field(pattern=r"^[1-9][0-9]{0,17}$")
    alias: str = Field(min_length=1, max_length=255)
    reason: str = Field(min_length=1, max_length=2000)
    minutes: int = Field(default=60, ge=1, le=24 * 60)


class BreakGlassOut(BaseModel):
    """A granted exception."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: int
    name: str
    version: str
    alias: str
    expires_at: datetime


class Doorbell:
    """Runs ``work`` on a background thread whenever rung; rings coalesce."""

    def __init__(self, work: Callable[[], object]) -> None:
        """Call ``work`` after each ring (at least once per ring, possibly for several)."""
        self._work = work
        self._event = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="mamori-mlflow", daemon=True)
        self._thread.start()

    def ring(self, _delivery_id: str = "") -> None:
        """Ask for ``work`` to run soon (it handles every pending delivery, this one too)."""
        self._event.set()

    def stop(self, timeout: float = 10.0) -> None:
        """Finish the current run and stop."""
        self._stop = True
        self._event.set()
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            self._event.wait()
            self._event.clear()
            if self._stop:
                return
            try:
                self._work()
            except MamoriError as exc:
                _log.warning("mlflow_work_failed", error=exc.diagnostics())
            except Exception as exc:  # noqa: BLE001 - the loop must outlive one bad delivery; its row stays PENDING and is retried
                _log.exception("mlflow_work_crashed", error=repr(exc))


def _promotion(
    runtime: Runtime,
    request: Request,
    *,
    name: str,
    version: str,
    target: str,
    actor: str,
    current: RegistryFacts | None,
) -> PromotionDecision:
    scoped_principal(request, Scope.GATE)
    return decide_promotion(
        runtime.lifecycle,
        name=name,
        version=version,
        target=target,
        actor=actor or "?",
        current=current,
    )


def _facts(
    created: int | None, run_id: str, source_uri: str, model_id: str, listing: str
) -> RegistryFacts | None:
    if created is None or not listing:
        return None
    return RegistryFacts(VersionIdentity(created, run_id, source_uri, model_id), listing)


def _in_process_doorbell(runtime: Runtime) -> Doorbell:
    from mamori.lifecycle.mlflow.events import build_integration  # noqa: PLC0415 - needs mlflow

    holder: dict[str, object] = {}

    def _work() -> None:
        integration = holder.get("integration")
        if integration is None:
            integration = build_integration(runtime.settings, runtime.lifecycle)
            holder["integration"] = integration
        integration.process_pending()  # type: ignore[attr-defined]

    bell = Doorbell(_work)
    bell.ring()  # finish deliveries accepted before a restart
    return bell


def mlflow_router(
    runtime: Runtime, *, doorbell: Callable[[str], object] | None = None
) -> APIRouter:
    """The MLflow routes; ``doorbell`` gets the id of each accepted delivery.

    Without a ``doorbell`` the deliveries are processed on a thread of this process.
    """
    ring = doorbell
    if ring is None and runtime.settings.mlflow_tracking_uri:
        ring = _in_process_doorbell(runtime).ring
    router = APIRouter(prefix="/v1", tags=["mlflow"])
    hooks = [Depends(network_guard(RouteGroup.HOOKS))]
    api = [Depends(network_guard(RouteGroup.API))]
    admin = [*api, Depends(network_guard(RouteGroup.ADMIN))]

    @router.post(
        "/hooks/mlflow",
        status_code=HTTPStatus.ACCEPTED,
        dependencies=hooks,
        summary="MLflow webhook receiver (HMAC-signed deliveries)",
    )
    async def receive(request: Request) -> JSONResponse:
        """Verify, deduplicate and store a delivery; 202 at once, the work runs later."""
        declared = request.headers.get("content-length", "0")
        if not declared.isdigit() or int(declared) > _MAX_BODY:
            return problem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "webhook body is too large")
        body = await request.body()  # the exact bytes MLflow signed, before any parsing
        if len(body) > _MAX_BODY:
            return problem(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "webhook body is too large")
        secret = runtime.settings.mlflow_webhook_secret
        key = b"" if secret is None else secret.get_secret_value().encode()
        # An IdentityError here becomes a 401 problem through the app's handlers.
        delivery = verify_delivery(key, request.headers, body, now=time.time())
        try:
            kind, data = parse_event(body)
        except RegistryError as exc:
            return problem(HTTPStatus.BAD_REQUEST, exc.diagnostics())
        from mamori.lifecycle.mlflow.events import record_delivery  # noqa: PLC0415

        fresh = await anyio.to_thread.run_sync(record_delivery, runtime.store, delivery, kind, data)
        if not fresh:
            return problem(
                HTTPStatus.CONFLICT, f"delivery {delivery.delivery_id} was already received"
            )
        if kind is not None and ring is not None:
            # The delivery is stored first: a lost ring is caught up by the worker's start
            # and the periodic sweep, never lost.
            ring(delivery.delivery_id)
        return JSONResponse(
            {"delivery_id": delivery.delivery_id, "event": kind.value if kind else "ignored"},
            status_code=HTTPStatus.ACCEPTED,
        )

    @router.get(
        "/gate/binding",
        response_model=PromotionOut,
        dependencies=api,
        summary="May this registry version take this protected alias or stage?",
    )
    async def gate_binding(
        request: Request,
        *,
        name: Annotated[str, Query(min_length=1, max_length=512)],
        version: Annotated[str, Query(pattern=r"^[1-9][0-9]{0,17}$")],
        target: Annotated[str, Query(min_length=1, max_length=255)],
        actor: Annotated[str, Query(max_length=255)] = "",
        source: Annotated[str, Query(pattern="^mlflow$")] = "mlflow",
        created: Annotated[int | None, Query(ge=0)] = None,
        run_id: Annotated[str, Query(max_length=255)] = "",
        source_uri: Annotated[str, Query(max_length=4096)] = "",
        model_id: Annotated[str, Query(max_length=255)] = "",
        listing: Annotated[str, Query(pattern=r"^([0-9a-f]{64})?$")] = "",
    ) -> PromotionOut:
        """Allowed only when the registry still holds the bound object and bytes, all deployable.

        The version must still be the bound registry object, its artifact listing must match
        the bound manifest, and every bound artifact must be deployable. ``created``,
        ``run_id``, ``source_uri`` and ``model_id`` are the version's identity as the
        registry holds it now and ``listing`` the SHA-256 of its current artifact listing (the
        ``mamori-gate`` plugin reads both in the MLflow server). Without them a bound
        version is denied. Always 200 for a well-formed question; each decision is audited.
        """
        del source
        current = _facts(created, run_id, source_uri, model_id, listing)
        # One worker-thread hop for authentication and the decision, as for GET /v1/gate.
        answer = functools.partial(
            _promotion,
            runtime,
            request,
            name=name,
            version=version,
            target=target,
            actor=actor,
            current=current,
        )
        decision = await anyio.to_thread.run_sync(answer)
        return PromotionOut(
            allowed=decision.allowed, reason=decision.reason, break_glass=decision.break_glass
        )

    @router.post(
        "/hooks/mlflow/break-glass",
        response_model=BreakGlassOut,
        status_code=HTTPStatus.CREATED,
        dependencies=admin,
        summary="Grant an audited, time-limited promotion exception (admin, MFA, reason)",
    )
    def break_glass(
        principal: Annotated[Principal, Depends(requires(Scope.ADMIN))], body: BreakGlassIn
    ) -> BreakGlassOut:
        """Let exactly this version take exactly this alias until the grant expires."""
        grant = grant_break_glass(
            runtime.lifecycle,
            principal,
            name=body.name,
            version=body.version,
            alias=body.alias,
            reason=body.reason,
            duration=timedelta(minutes=body.minutes),
        )
        return BreakGlassOut(
            id=grant.id,
            name=grant.name,
            version=grant.version,
            alias=grant.alias,
            expires_at=grant.expires_at,
        )

    return router
