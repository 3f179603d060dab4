"""Prometheus metrics and JSON access logs.

Every request gets an id (a sane incoming ``X-Request-ID`` or a fresh one, echoed back) and one
JSON log line with the route template, status, latency and the authenticated subject. The
``Authorization`` header, tokens and query strings are never logged: query strings can carry
secrets and digests of private models alike.
"""

from __future__ import annotations

import logging
import re
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Final

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mamori.errors import StoreError
from mamori.identity.principal import Principal
from mamori.identity.subjects import SubjectRules
from mamori.lifecycle import Action, ArtifactFacts, LifecycleAuthorizer
from mamori.policy.engine import Decision, PolicyEngine
from mamori.service.auth import SUBJECT_STATE_KEY
from mamori.store import Store
from mamori.store.models import ArtifactRow, ScanRow

__all__ = [
    "CountingAuthorizer",
    "Metrics",
    "ObserveMiddleware",
    "StoreCollector",
    "configure_logging",
]

_REQUEST_ID: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_access = structlog.get_logger("mamori.access")


class Metrics:
    """The API's metrics in a registry of its own (so several apps can live in one process)."""

    def __init__(self) -> None:
        """Create the registry and the request, latency and decision metrics."""
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "mamori_http_requests",
            "HTTP requests by route template, method and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mamori_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.decisions = Counter(
            "mamori_decisions",
            "Authorization and gate decisions by action and effect (allow/deny).",
            ["action", "effect"],
            registry=self.registry,
        )

    def watch_store(self, store: Store) -> None:
        """Export scan and artifact counts read from the store at scrape time."""
        self.registry.register(StoreCollector(store))


class StoreCollector(Collector):
    """Scans by verdict and artifacts by state, counted in the store.

    Read at scrape time rather than counted in this process, because scans finish in worker
    processes the API never hears from.
    """

    def __init__(self, store: Store) -> None:
        """Count rows of ``store``."""
        self.store = store

    def describe(self) -> list[Metric]:
        """No static description: avoids a store query when the collector is registered."""
        return []

    def collect(self) -> Iterator[Metric]:
        """Query the store; a store failure exports nothing rather than failing the scrape."""
        scans = GaugeMetricFamily(
            "mamori_scans",
            "Scans in the store by status and verdict.",
            labels=["status", "verdict"],
        )
        artifacts = GaugeMetricFamily(
            "mamori_artifacts", "Artifacts in the store by lifecycle state.", labels=["state"]
        )
        try:
            with self.store.read() as session:
                scan_rows = session.execute(
                    select(ScanRow.status, ScanRow.verdict, func.count()).group_by(
                        ScanRow.status, ScanRow.verdict
                    )
                ).all()
                state_rows = session.execute(
                    select(ArtifactRow.state, func.count()).group_by(ArtifactRow.state)
                ).all()
        except StoreError:
            return
        for status, verdict, count in scan_rows:
            scans.add_metric([str(status), verdict or ""], float(count))
        for state, count in state_rows:
            artifacts.add_metric([str(state)], float(count))
        yield scans
        yield artifacts


class CountingAuthorizer(LifecycleAuthorizer):
    """The lifecycle authorizer, counting every decision by action and effect."""

    def __init__(
        self, engine: PolicyEngine, counter: Counter, *, subjects: SubjectRules | None = None
    ) -> None:
        """Decide with ``engine``; count into ``counter`` (labels: action, effect)."""
        super().__init__(engine, subjects=subjects)
        self._counter = counter

    def decide(
        self,
        principal: Principal,
        action: Action,
        artifact: ArtifactFacts | None,
        *,
        reason: str = "",
    ) -> Decision:
        """Decide as the base class does, then count the outcome."""
        decision = super().decide(principal, action, artifact, reason=reason)
        self._counter.labels(action.value, decision.effect.value).inc()
        return decision


def configure_logging(level: int = logging.INFO) -> None:
    """JSON lines on stderr, with context variables (the request id) merged in."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )


class ObserveMiddleware:
    """Request id, access log line and request metrics for every HTTP request."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        """Wrap ``app``."""
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Time the request, tag the response with its id, then log and count it."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        status = 500

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message).append("x-request-id", request_id)
            await send(message)

        with structlog.contextvars.bound_contextvars(request_id=request_id):
            try:
                await self.app(scope, receive, _send)
            finally:
                elapsed = time.perf_counter() - started
                route = getattr(scope.get("route"), "path", None) or "<unmatched>"
                method = str(scope.get("method", ""))
                self.metrics.requests.labels(method, route, str(status)).inc()
                self.metrics.latency.labels(method, route).observe(elapsed)
                state = scope.get("state") or {}
                _access.info(
                    "request",
                    method=method,
                    route=route,
                    status=status,
                    latency_ms=round(elapsed * 1000, 3),
                    subject=state.get(SUBJECT_STATE_KEY),
                )


def _request_id(scope: Scope) -> str:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = bytes(value).decode("latin-1")
            if _REQUEST_ID.match(text):
                return text
            break
    return uuid.uuid4().hex
