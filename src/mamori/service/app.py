"""The FastAPI application factory."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio.to_thread
from fastapi import Depends, FastAPI
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from mamori import __version__
from mamori.config import Settings, load_settings
from mamori.errors import StoreError
from mamori.identity.network import RouteGroup
from mamori.policy.engine import PolicyEngine
from mamori.service import admin, authzen, routes
from mamori.service.auth import RuntimeDep, network_guard
from mamori.service.console import install_console
from mamori.service.mlflow_hooks import mlflow_router
from mamori.service.observe import CountingAuthorizer, Metrics, ObserveMiddleware
from mamori.service.problems import install_problem_handlers, problem
from mamori.service.refusals import RefusalLog
from mamori.service.runtime import (
    InProcessScanner,
    ScanMode,
    build_runtime,
    job_queue,
    jobs_available,
    subject_rules,
)

if TYPE_CHECKING:
    from mamori.lifecycle.queue import JobQueue

__all__ = ["create_app"]

_DESCRIPTION = (
    "Quarantine, scan, approve and gate ML model artifacts by digest. Authenticate with "
    "`Authorization: Bearer <JWT or mamori_ API token>`. Errors are RFC 9457 problem details."
)


def create_app(
    settings: Settings | None = None,
    *,
    scan_mode: ScanMode = ScanMode.AUTO,
    enqueue: Callable[[str], None] | None = None,
    mlflow_doorbell: Callable[[str], object] | None = None,
) -> FastAPI:
    """Build the API over a runtime made from ``settings`` (default: environment + toml).

    Args:
        settings: the service settings.
        scan_mode: where scans run when ``enqueue`` is not given (see :class:`ScanMode`).
        enqueue: receives each digest that needs a scan; overrides ``scan_mode``.
        mlflow_doorbell: called with the id of each accepted MLflow delivery; default: one
            queue task per delivery when scans go through the queue, else a thread of this
            process (when MLflow is configured).
    """
    settings = settings or load_settings()
    metrics = Metrics()
    scanner: InProcessScanner | None = None
    queue: JobQueue | None = None
    if enqueue is None:
        enqueue, scanner, queue = _scanning(settings, scan_mode)
    if mlflow_doorbell is None and queue is not None:
        # Deliveries are worked by the queue's workers, one task each, not by this process.
        from mamori.lifecycle.mlflow.tasks import register_mlflow_tasks  # noqa: PLC0415

        tasks = register_mlflow_tasks(queue, settings)
        if tasks is not None:
            mlflow_doorbell = tasks.delivery

    def _authorizer(engine: PolicyEngine) -> CountingAuthorizer:
        return CountingAuthorizer(engine, metrics.decisions, subjects=subject_rules(settings))

    runtime = build_runtime(settings, enqueue=enqueue, authorizer=_authorizer)
    metrics.watch_store(runtime.store)
    refusals = RefusalLog(
        runtime.store, metrics.auth_refusals, interval_seconds=settings.refusal_audit_seconds
    )

    @asynccontextmanager
    async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
        if scanner is not None:
            await anyio.to_thread.run_sync(scanner.start, runtime.lifecycle)
        refusals.start()
        runtime.verifier.jwks.preload()
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(refusals.stop)
            if scanner is not None:
                await anyio.to_thread.run_sync(scanner.stop)
            runtime.close()

    app = FastAPI(
        title="mamori",
        version=__version__,
        description=_DESCRIPTION,
        lifespan=_lifespan,
        docs_url="/docs",
        openapi_url="/openapi.json",
        redoc_url=None,
    )
    app.state.runtime = runtime
    app.state.metrics = metrics
    app.state.scanner = scanner
    app.state.refusals = refusals
    install_problem_handlers(app)
    app.add_middleware(ObserveMiddleware, metrics=metrics)
    app.include_router(routes.router)
    app.include_router(routes.admin_router)
    app.include_router(admin.router)
    app.include_router(authzen.router)
    app.include_router(mlflow_router(runtime, doorbell=mlflow_doorbell))
    install_console(app)

    _health_routes(app, metrics)
    return app


def _scanning(
    settings: Settings, mode: ScanMode
) -> tuple[Callable[[str], None], InProcessScanner | None, JobQueue | None]:
    if mode is ScanMode.AUTO:
        mode = ScanMode.QUEUE if jobs_available() else ScanMode.INLINE
    if mode is ScanMode.QUEUE:
        queue = job_queue(settings)
        from mamori.lifecycle.queue import enqueue_scan  # noqa: PLC0415 - job_queue checked

        return functools.partial(enqueue_scan, queue), None, queue
    scanner = InProcessScanner()
    return scanner.enqueue, scanner, None


def _health_routes(app: FastAPI, metrics: Metrics) -> None:
    @app.get("/healthz", summary="Liveness", tags=["health"])
    def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", summary="Readiness (the store answers)", tags=["health"])
    def readyz(runtime: RuntimeDep) -> JSONResponse:
        """503 until the store answers a query."""
        try:
            runtime.store.ping()
        except StoreError as exc:
            return problem(503, exc.diagnostics())
        return JSONResponse({"status": "ready"})

    @app.get(
        "/metrics",
        summary="Prometheus metrics",
        tags=["health"],
        dependencies=[Depends(network_guard(RouteGroup.API))],
        response_class=Response,
    )
    def prometheus() -> Response:
        """Request counts and latency by route, decisions, scans by verdict."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)
