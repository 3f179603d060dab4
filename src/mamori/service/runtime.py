"""The object graph behind the API and the CLI, built once from :class:`~mamori.config.Settings`.

Store (migrated), quarantine, Cedar policies, the lifecycle, the token verifiers and the network
policy. How scans get run is injected: the Huey queue of :mod:`mamori.jobs` when it is
installed, or a background thread in this process (:class:`InProcessScanner`) otherwise.
"""

from __future__ import annotations

import enum
import importlib.util
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Final

import structlog

from mamori.config import Settings
from mamori.errors import ConfigError, IdentityError, MamoriError
from mamori.identity.apitokens import ApiTokens, is_api_token
from mamori.identity.claims import ClaimMapping
from mamori.identity.issuer import DevIssuer
from mamori.identity.jwt import JwksSource, VerifierConfig, verify_token
from mamori.identity.network import NetworkPolicy
from mamori.identity.principal import Principal
from mamori.identity.subjects import SubjectRules
from mamori.lifecycle import BlobStore, Lifecycle, LifecycleAuthorizer
from mamori.lifecycle.authz import LIFECYCLE_ROLES
from mamori.lifecycle.factory import load_lifecycle_policies, load_scan_policy
from mamori.policy.engine import PolicyEngine
from mamori.store import Store

if TYPE_CHECKING:
    from mamori.jobs import JobQueue

__all__ = [
    "InProcessScanner",
    "Runtime",
    "ScanMode",
    "build_runtime",
    "claim_mapping",
    "dev_issuer",
    "job_queue",
    "jobs_available",
    "subject_rules",
    "verifier_config",
]

_log = structlog.get_logger("mamori.service")
_STOP: Final = ""


class ScanMode(enum.StrEnum):
    """Where uploaded artifacts get scanned."""

    AUTO = "auto"
    """The job queue when :mod:`mamori.jobs` is installed, else a thread in this process."""
    QUEUE = "queue"
    """The Huey queue of :mod:`mamori.jobs`; a separate ``mamori worker`` runs the scans."""
    INLINE = "inline"
    """A background thread of this process (single-machine development and tests)."""


def jobs_available() -> bool:
    """True when the :mod:`mamori.jobs` package (Huey tasks) is installed."""
    return importlib.util.find_spec("mamori.jobs") is not None


def job_queue(settings: Settings) -> JobQueue:
    """The Huey queue configured by ``settings`` (scans, and MLflow deliveries when set)."""
    try:
        from mamori.jobs import make_queue  # noqa: PLC0415 - optional package
    except ImportError as exc:
        raise ConfigError("scan mode 'queue' needs the mamori.jobs package") from exc
    return make_queue(settings)


def dev_issuer(settings: Settings) -> DevIssuer:
    """The local development issuer (its key pair lives in ``settings.issuer_dir``)."""
    return DevIssuer(
        settings.issuer_dir,
        issuer=settings.oidc_issuer or settings.dev_issuer_url,
        audience=settings.oidc_audience,
    )


def subject_rules(settings: Settings) -> SubjectRules:
    """How subjects compare for four eyes (``identity.case_sensitive_issuers``)."""
    return SubjectRules(frozenset(settings.identity.case_sensitive_issuers))


def claim_mapping(settings: Settings) -> ClaimMapping:
    """The configured issuer's claim mapping: ``[identity]``, see ``IdentitySource``."""
    source = settings.identity
    try:
        if source.roles is None:
            return ClaimMapping(
                roles={settings.roles_claim: {r: {r} for r in LIFECYCLE_ROLES}},
                attributes=source.attributes,
                exclusive=source.exclusive,
            )
        return ClaimMapping(source.roles, source.attributes, source.exclusive)
    except IdentityError as exc:
        msg = f"invalid [identity] settings: {exc.diagnostics()}"
        raise ConfigError(msg) from exc


def verifier_config(settings: Settings) -> VerifierConfig:
    """How JWTs are verified: the dev issuer's JWKS file, or the configured JWKS URL/file."""
    if settings.dev_issuer:
        jwks = JwksSource(
            path=dev_issuer(settings).jwks_path,
            ttl_seconds=settings.jwks_ttl_seconds,
            refresh_interval_seconds=settings.jwks_refresh_seconds,
        )
        issuer = settings.oidc_issuer or settings.dev_issuer_url
    else:
        if settings.oidc_issuer is None:
            raise ConfigError("oidc_issuer must be set when the development issuer is off")
        if (settings.jwks_url is None) == (settings.jwks_file is None):
            raise ConfigError("set exactly one of jwks_url or jwks_file")
        jwks = JwksSource(
            path=settings.jwks_file,
            url=settings.jwks_url,
            ttl_seconds=settings.jwks_ttl_seconds,
            refresh_interval_seconds=settings.jwks_refresh_seconds,
        )
        issuer = settings.oidc_issuer
    try:
        return VerifierConfig(
            issuer=issuer,
            audience=settings.oidc_audience,
            jwks=jwks,
            algorithms=settings.jwt_algorithms,
            leeway_seconds=settings.jwt_leeway_seconds,
            claims=claim_mapping(settings),
            mfa_claim=settings.mfa_claim,
            mfa_value=settings.mfa_value,
        )
    except IdentityError as exc:
        msg = f"invalid token verification settings: {exc.diagnostics()}"
        raise ConfigError(msg) from exc


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a request handler or CLI command needs."""

    settings: Settings
    store: Store
    blobs: BlobStore
    engine: PolicyEngine
    authz: LifecycleAuthorizer
    lifecycle: Lifecycle
    verifier: VerifierConfig
    tokens: ApiTokens
    network: NetworkPolicy

    def authenticate(self, credential: str) -> Principal:
        """Verify a bearer credential: a ``mamori_`` API token or a JWT. Fails with 401 errors."""
        if is_api_token(credential):
            return self.tokens.verify(credential)
        return verify_token(credential, self.verifier)

    def close(self) -> None:
        """Release database connections."""
        self.store.dispose()


def build_runtime(
    settings: Settings,
    *,
    enqueue: Callable[[str], None] | None = None,
    authorizer: Callable[[PolicyEngine], LifecycleAuthorizer] | None = None,
) -> Runtime:
    """Open and migrate the store and wire the lifecycle; ``enqueue`` receives new digests."""
    store = Store(settings.resolved_database_url)
    store.migrate()
    blobs = BlobStore(settings.blob_dir)
    # A crashed upload (kill -9, power loss) leaves its .incoming-* file behind; up to the
    # upload cap each. Files a live writer still holds (another process) are kept.
    if removed := blobs.remove_orphans():
        _log.info("orphaned_uploads_removed", count=removed)
    # The same policies, scan policy and staleness as the workers (mamori.lifecycle.factory).
    engine = load_lifecycle_policies(settings)
    if authorizer is None:
        authz = LifecycleAuthorizer(engine, subjects=subject_rules(settings))
    else:
        authz = authorizer(engine)
    lifecycle = Lifecycle(
        store,
        blobs,
        authz,
        scan_policy=load_scan_policy(settings),
        enqueue=enqueue,
        stale_after=timedelta(seconds=settings.scan_stale_seconds),
    )
    return Runtime(
        settings=settings,
        store=store,
        blobs=blobs,
        engine=engine,
        authz=authz,
        lifecycle=lifecycle,
        verifier=verifier_config(settings),
        tokens=ApiTokens(store),
        network=NetworkPolicy.from_settings(settings),
    )


class InProcessScanner:
    """A background thread that runs queued scans through :meth:`Lifecycle.run_scan`.

    Used when no job queue is configured. The store stays the source of truth: on start the
    thread picks up :meth:`Lifecycle.pending_scans`, so scans lost in a crash are redone.
    """

    def __init__(self, on_done: Callable[[str | None], None] | None = None) -> None:
        """Create an idle scanner; :meth:`start` it once the lifecycle exists."""
        self._queue: queue.Queue[str] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lifecycle: Lifecycle | None = None
        self._on_done = on_done

    def enqueue(self, sha256: str) -> None:
        """Queue one digest (the lifecycle's ``enqueue`` hook)."""
        self._queue.put(sha256)

    def start(self, lifecycle: Lifecycle) -> None:
        """Start the thread and re-queue every pending scan."""
        self._lifecycle = lifecycle
        for sha in lifecycle.pending_scans():
            self._queue.put(sha)
        self._thread = threading.Thread(target=self._run, name="mamori-scanner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the scan in progress and stop."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def join(self) -> None:
        """Block until every queued scan has been handled (for tests)."""
        self._queue.join()

    def _run(self) -> None:
        assert self._lifecycle is not None
        while True:
            sha = self._queue.get()
            try:
                if sha == _STOP:
                    return
                view = self._lifecycle.run_scan(sha)
                if self._on_done is not None:
                    self._on_done(None if view is None else view.verdict)
            except MamoriError as exc:
                # The scan row stays FAILED or stale; pending_scans() hands it out again.
                _log.warning("scan_failed", sha256=sha, error=exc.diagnostics())
            finally:
                self._queue.task_done()
