"""The ``mamori-gate`` MLflow app plugin: no protected alias without mamori's yes.

Run ``mlflow server --app-name mamori-gate``. The plugin wraps MLflow's own basic-auth app
(``mlflow.server.auth.create_app``) and adds one Flask ``before_request`` hook *after* the
basic-auth one, so a request reaching it is authenticated and, for non-admins, already
authorized by MLflow. Admins skip MLflow's validators but not this hook.

The hook matches the two promotion writes on every prefix Flask routes them under (``/api``,
``/ajax-api``, a ``--static-prefix``): ``POST …/mlflow/registered-models/alias`` with a
protected alias, and ``POST …/mlflow/model-versions/transition-stage`` to Production. It parses
the body with MLflow's own request parser (``handlers._get_request_message``), so the hook
judges exactly the name, version and alias the handler will act on. It reads, in this server
process, what the registry holds now for that version: its identity (creation timestamp, run
id, ``source``, logged model id) from the registry store, and the ``(path, size)`` listing of
its artifacts from the artifact store (``--artifacts-destination`` for ``mlflow-artifacts:``
locations). It then asks mamori ``GET /v1/gate/binding`` with those facts and a
``gate``-scoped API token, over one kept-alive connection per server thread; mamori compares
them with what it bound. Anything but a clear yes (a deny, facts that cannot be read, a
timeout, a connection error, a non-200, an unparsable request) is a 403 with the reason: the
gate fails closed.

Configuration (environment of the MLflow server): ``MAMORI_GATE_URL``, ``MAMORI_GATE_TOKEN``,
``MAMORI_GATE_TIMEOUT_SECONDS`` and ``MAMORI_MLFLOW_PROTECTED_ALIASES`` (JSON list).
"""

from __future__ import annotations

import http.client
import json
import re
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any, Final

import structlog
from flask import Flask, Response, make_response, request

from mamori.config import load_settings
from mamori.errors import ConfigError
from mamori.lifecycle.mlflow.gate import PRODUCTION_STAGE, SOURCE, is_protected
from mamori.lifecycle.mlflow.identity import UNKNOWN_SIZE, RegistryFacts, VersionIdentity

__all__ = ["FactsReader", "GateClient", "GateConfig", "create_app", "install_gate", "server_facts"]

FactsReader = Callable[[str, str], "RegistryFacts | str"]
"""Reads a version's current identity and listing (or says why it cannot)."""

_log = structlog.get_logger("mamori.mlflow.gate")

_ALIAS_RULE: Final = re.compile(r"/(api|ajax-api)/[0-9]+\.[0-9]+/mlflow/registered-models/alias$")
_STAGE_RULE: Final = re.compile(
    r"/(api|ajax-api)/[0-9]+\.[0-9]+/mlflow/model-versions/transition-stage$"
)
_VERSION: Final = re.compile(r"^[1-9][0-9]{0,17}$")
_MAX_ANSWER: Final = 64 * 1024
_MAX_LISTED: Final = 100_000


@dataclass(frozen=True, slots=True)
class GateConfig:
    """Where mamori answers, with which token, how long to wait, which aliases to protect."""

    url: str
    token: str
    timeout: float
    protected: tuple[str, ...]

    @classmethod
    def from_settings(cls) -> GateConfig:
        """Read ``MAMORI_*`` settings; refuse to start without a gate URL and token."""
        settings = load_settings()
        if not settings.gate_url or settings.gate_token is None:
            raise ConfigError("the mamori-gate plugin needs MAMORI_GATE_URL and MAMORI_GATE_TOKEN")
        if not settings.gate_url.startswith(("http://", "https://")):
            raise ConfigError("MAMORI_GATE_URL must be an http(s) URL")
        return cls(
            url=settings.gate_url.rstrip("/"),
            token=settings.gate_token.get_secret_value(),
            timeout=settings.gate_timeout_seconds,
            protected=settings.mlflow_protected_aliases,
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """The gate's answer as the plugin sees it."""

    allowed: bool
    reason: str


class GateClient:
    """Asks mamori over a kept-alive connection per thread; every failure is a deny."""

    def __init__(self, config: GateConfig) -> None:
        """Use ``config`` for every question."""
        self.config = config
        parts = urllib.parse.urlsplit(config.url)
        self._https = parts.scheme == "https"
        self._host = parts.hostname or ""
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
            conn = cls(self._host, self._port, timeout=self.config.timeout)
            self._local.conn = conn
        return conn

    def _drop(self) -> None:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
        self._local.conn = None

    def _get(self, path: str) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {self.config.token}", "Accept": "application/json"}
        # One retry, only when a kept-alive connection turned out to be closed by the server
        # (never after a timeout: that would double the time a caller waits for a deny).
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                body = response.read(_MAX_ANSWER + 1)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
                self._drop()
                if attempt:
                    raise
                continue
            except (OSError, http.client.HTTPException):
                self._drop()
                raise
            if len(body) > _MAX_ANSWER or response.will_close:
                self._drop()
            return response.status, body
        raise http.client.HTTPException("unreachable")  # pragma: no cover - loop returns

    def ask(
        self,
        *,
        name: str,
        version: str,
        target: str,
        actor: str,
        current: RegistryFacts | None = None,
    ) -> Verdict:
        """May ``name``/``version`` (now ``current`` in the registry) take ``target``?

        Never raises.
        """
        params = {"source": SOURCE, "name": name, "version": version, "target": target}
        params["actor"] = actor
        if current is not None:
            params |= {
                "created": str(current.identity.created),
                "run_id": current.identity.run_id,
                "source_uri": current.identity.source,
                "model_id": current.identity.model_id,
                "listing": current.listing_digest,
            }
        query = urllib.parse.urlencode(params)
        try:
            status, raw = self._get(f"{self._base}/v1/gate/binding?{query}")
        except (OSError, http.client.HTTPException) as exc:
            reason = f"mamori gate unreachable ({type(exc).__name__}); failing closed"
            return Verdict(allowed=False, reason=reason)
        if status != HTTPStatus.OK:
            return Verdict(
                allowed=False, reason=f"mamori gate answered HTTP {status}; failing closed"
            )
        try:
            body: Any = json.loads(raw)
        except ValueError:
            return Verdict(allowed=False, reason="mamori gate answered malformed JSON")
        if not isinstance(body, dict) or body.get("allowed") is not True:
            said = body.get("reason") if isinstance(body, dict) else None
            return Verdict(allowed=False, reason=str(said or "mamori gate gave no clear answer"))
        return Verdict(allowed=True, reason=str(body.get("reason", "")))


def _deny(reason: str) -> Response:
    # MLflow's error shape, so MlflowClient raises with our reason in its message.
    body = {"error_code": "PERMISSION_DENIED", "message": f"mamori gate: {reason}"}
    response = make_response(json.dumps(body), 403)
    response.mimetype = "application/json"
    return response


def _parse(kind: str) -> tuple[str, str, str] | str:
    """``(name, version, target)`` parsed like MLflow's handler, or the reason it cannot be."""
    from mlflow.entities.model_registry.model_version_stages import (  # noqa: PLC0415
        get_canonical_stage,
    )
    from mlflow.exceptions import MlflowException  # noqa: PLC0415
    from mlflow.protos.model_registry_pb2 import (  # noqa: PLC0415
        SetRegisteredModelAlias,
        TransitionModelVersionStage,
    )
    from mlflow.server.handlers import _get_request_message  # noqa: PLC0415

    try:
        if kind == "alias":
            # MLflow's private parser is untyped; using it keeps us parsing like the handler.
            msg: Any = _get_request_message(SetRegisteredModelAlias())  # type: ignore[no-untyped-call]
            target = str(msg.alias)
        else:
            msg = _get_request_message(TransitionModelVersionStage())  # type: ignore[no-untyped-call]
            target = get_canonical_stage(str(msg.stage))  # type: ignore[no-untyped-call]
    except (MlflowException, ValueError, TypeError) as exc:
        return f"cannot read the request ({type(exc).__name__})"
    return str(msg.name), str(msg.version).strip(), target


def _promotion_kind() -> str | None:
    """``"alias"`` or ``"stage"`` for the two promotion writes, else ``None``."""
    if request.method != "POST" or request.url_rule is None:
        return None
    rule = request.url_rule.rule
    if _ALIAS_RULE.search(rule):
        return "alias"
    if _STAGE_RULE.search(rule):
        return "stage"
    return None


def _is_gated(kind: str, target: str, protected: tuple[str, ...]) -> bool:
    if kind == "alias":
        return is_protected(target, protected)
    return target == PRODUCTION_STAGE


def server_facts(name: str, version: str) -> RegistryFacts | str:
    """The version's identity and artifact listing, read inside the MLflow server process."""
    # The server's own stores: no HTTP round trip, and exactly what the handler will act on.
    from mlflow.server.handlers import (  # noqa: PLC0415 - only inside an MLflow server
        _get_artifact_repo_mlflow_artifacts,
        _get_model_registry_store,
    )
    from mlflow.store.artifact.artifact_repository_registry import (  # noqa: PLC0415
        get_artifact_repository,
    )

    try:
        store: Any = _get_model_registry_store()
        identity = VersionIdentity.of(store.get_model_version(name, version))
        uri = str(store.get_model_version_download_uri(name, version))
        parts = urllib.parse.urlsplit(uri)
        if parts.scheme == "mlflow-artifacts":
            repo: Any = _get_artifact_repo_mlflow_artifacts()  # type: ignore[no-untyped-call]
            root = parts.path.strip("/")
        else:
            repo, root = get_artifact_repository(uri), ""
        return RegistryFacts.from_listing(identity, _listing(repo, root))
    except Exception as exc:  # noqa: BLE001 - facts we cannot read are a deny, with the reason
        message = getattr(exc, "message", None) or type(exc).__name__
        return f"cannot read the version's current identity and artifacts: {str(message)[:200]}"


def _listing(repo: Any, root: str) -> list[tuple[str, int]]:
    """``(path relative to root, size)`` of every file under ``root`` in ``repo``."""
    found: list[tuple[str, int]] = []
    folders: list[str | None] = [root or None]
    prefix = f"{root}/" if root else ""
    while folders:
        for info in repo.list_artifacts(folders.pop()):
            if len(found) + len(folders) > _MAX_LISTED:
                msg = f"more than {_MAX_LISTED} artifact entries"
                raise ValueError(msg)
            if info.is_dir:
                folders.append(info.path)
                continue
            path = str(info.path)
            if not path.startswith(prefix):
                msg = f"listed path {path[:80]!r} is outside the version's artifacts"
                raise ValueError(msg)
            size = UNKNOWN_SIZE if info.file_size is None else int(info.file_size)
            found.append((path[len(prefix) :], size))
    return found


def install_gate(flask_app: Flask, client: GateClient, facts: FactsReader = server_facts) -> None:
    """Register the promotion hook on ``flask_app`` (after basic-auth's own hook)."""

    def _mamori_gate() -> Response | None:
        kind = _promotion_kind()
        if kind is None:
            return None
        parsed = _parse(kind)
        if isinstance(parsed, str):
            return _deny(parsed)
        name, version, target = parsed
        if not _is_gated(kind, target, client.config.protected):
            return None
        if not _VERSION.fullmatch(version):
            return _deny(f"version {version[:40]!r} is not a version number")
        actor = request.authorization.username if request.authorization else ""
        current = facts(name, version)
        if isinstance(current, str):
            verdict = Verdict(allowed=False, reason=current)
        else:
            verdict = client.ask(
                name=name, version=version, target=target, actor=actor or "", current=current
            )
        _log.info(
            "mamori_gate",
            name=name,
            version=version,
            target=target,
            actor=actor,
            allowed=verdict.allowed,
        )
        if verdict.allowed:
            return None
        return _deny(f"{name} version {version} may not become {target!r}: {verdict.reason}")

    flask_app.before_request(_mamori_gate)


def create_app(app: Flask | None = None) -> Any:
    """The ``mlflow.app`` factory: MLflow's basic-auth app plus mamori's promotion gate."""
    from mlflow.server import app as mlflow_app  # noqa: PLC0415 - imports the whole server
    from mlflow.server.auth import create_app as basic_auth_app  # noqa: PLC0415

    flask_app = app or mlflow_app
    client = GateClient(GateConfig.from_settings())
    wrapped = basic_auth_app(flask_app)
    # Registered after basic-auth's hook: Flask runs before_request hooks in order, so ours
    # sees only authenticated requests (and admins, who skip MLflow's own validators).
    install_gate(flask_app, client)
    return wrapped
