"""A real ``mlflow server`` (SQLite, basic-auth through the mamori-gate plugin) and a real
mamori API (uvicorn on a thread of this process) that MLflow delivers its webhooks to.

Both start once per session. mamori can be stopped and started again (same store, same port)
to lose webhooks on purpose.
"""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from mamori.config import Settings, load_settings
from mamori.identity.apitokens import Scope
from mamori.identity.principal import Principal
from mamori.lifecycle import Lifecycle
from mamori.service import ScanMode, create_app
from mamori.store import Store
from mamori.store.apitokens import ApiTokens
from mamori.store.models import ApprovalDecision, ArtifactRow, BindingRow, ScanRow, ScanStatus
from mamori.store.models_mlflow import MlflowVersionRow, VersionStatus

ADMIN = ("admin", "Adm1n-pass-for-tests!")
ALICE = ("alice", "Al1ce-pass-for-tests!")
SECRET = "whsec-test-0123456789abcdef"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # MLflow warns about its own features (type hints, deprecated stages, starlette's wsgi
    # module) when models are logged; those are not mamori's warnings, so they are ignored
    # for warnings issued from MLflow's modules only. Everything else stays an error.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.filterwarnings("ignore:::mlflow"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def principal(subject: str, *roles: str) -> Principal:
    return Principal(
        subject=subject,
        issuer="https://idp.test",
        tenant="",
        roles=frozenset(roles),
        attributes=MappingProxyType({"mfa": "true"}),
    )


@dataclass
class Mamori:
    """The mamori API on a thread; ``stop()``/``start()`` simulate an outage and a restart."""

    settings: Settings
    port: int
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    store: Store = field(init=False)

    def __post_init__(self) -> None:
        self.store = Store(self.settings.resolved_database_url)
        self.store.migrate()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        app = create_app(self.settings, scan_mode=ScanMode.INLINE)
        self.app = app
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline, "mamori did not start"
            time.sleep(0.05)

    def stop(self) -> None:
        assert self.server is not None
        assert self.thread is not None
        self.server.should_exit = True
        self.thread.join(30)
        self.server = None

    @property
    def lifecycle(self) -> Lifecycle:
        return self.app.state.runtime.lifecycle

    def digests(self, name: str, version: str, member: str | None = None) -> list[str]:
        query = (
            select(ArtifactRow.sha256)
            .join(BindingRow, BindingRow.artifact_id == ArtifactRow.id)
            .where(
                BindingRow.source == "mlflow",
                BindingRow.name == name,
                BindingRow.version == version,
            )
        )
        if member is not None:
            query = query.where(BindingRow.member_path == member)
        with self.store.read() as session:
            return list(session.execute(query).scalars())

    def verdicts(self, name: str, version: str, timeout: float = 60) -> dict[str, str]:
        """Wait until every artifact bound to the version has a finished scan."""
        deadline = time.monotonic() + timeout
        while True:
            with self.store.read() as session:
                rows = session.execute(
                    select(BindingRow.member_path, ScanRow.status, ScanRow.verdict)
                    .join(ArtifactRow, BindingRow.artifact_id == ArtifactRow.id)
                    .outerjoin(ScanRow, ScanRow.artifact_id == ArtifactRow.id)
                    .where(
                        BindingRow.source == "mlflow",
                        BindingRow.name == name,
                        BindingRow.version == version,
                    )
                ).all()
                files = session.execute(
                    select(MlflowVersionRow.files).where(
                        MlflowVersionRow.name == name,
                        MlflowVersionRow.version == version,
                        MlflowVersionRow.status == VersionStatus.RESOLVED,
                    )
                ).scalar()
            # Resolution binds files one by one: wait for all of them, then for every scan.
            complete = files is not None and len({m for m, _, _ in rows}) == files
            if complete and all(status is ScanStatus.DONE for _, status, _ in rows):
                return {member: verdict for member, _, verdict in rows}
            assert time.monotonic() < deadline, f"no verdicts for {name}/{version}: {rows}"
            time.sleep(0.1)

    def approve_all(self, name: str, version: str) -> None:
        approver = principal("paula", "approver")
        for sha in self.digests(name, version):
            self.lifecycle.decide(approver, sha, ApprovalDecision.APPROVED)

    def reject_own_file(self, name: str, version: str) -> None:
        """Reject the one file no other test model shares, which denies the whole version.

        A verdict belongs to the bytes wherever they are bound, and the test models' other
        files are byte-identical: rejecting those would deny every other test's model too.
        """
        (sha,) = self.digests(name, version, "MLmodel")  # its model_uuid is unique
        self.lifecycle.decide(principal("paula", "approver"), sha, ApprovalDecision.REJECTED)


@dataclass
class Mlflow:
    url: str
    process: subprocess.Popen[bytes]

    def rest(self, user: tuple[str, str], method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", auth=user, timeout=30, **kwargs)

    def set_alias(self, user, name, version, alias, *, prefix="/api") -> httpx.Response:
        body = {"name": name, "version": version, "alias": alias}
        return self.rest(user, "POST", f"{prefix}/2.0/mlflow/registered-models/alias", json=body)


@pytest.fixture(scope="session")
def stack(  # noqa: PLR0915 - one linear setup
    tmp_path_factory, session_database_url
) -> Iterator[tuple[Mlflow, Mamori]]:
    root = tmp_path_factory.mktemp("mlflow-stack")
    mlflow_port, mamori_port = _free_port(), _free_port()
    mlflow_url = f"http://127.0.0.1:{mlflow_port}"
    settings = load_settings(
        data_dir=root / "mamori",
        database_url=session_database_url,  # PostgreSQL in CI's scale-out run
        port=mamori_port,
        mlflow_tracking_uri=mlflow_url,
        mlflow_webhook_secret=SECRET,
    )
    mamori = Mamori(settings, mamori_port)
    token = ApiTokens(mamori.store).create(
        name="mlflow-gate", subject="mlflow-gate", roles=(), scopes=(Scope.GATE,), created_by="t"
    )
    auth_ini = root / "basic_auth.ini"
    auth_ini.write_text(
        "[mlflow]\n"
        "default_permission = EDIT\n"
        f"database_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = {ADMIN[0]}\n"
        f"admin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAMORI_", "MLFLOW_"))}
    env |= {
        "MLFLOW_AUTH_CONFIG_PATH": str(auth_ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "flask-secret-for-tests",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": base64.urlsafe_b64encode(b"k" * 32).decode(),
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # one process less to start
        # Fire-and-forget without retries: a delivery made while mamori is down is lost for
        # good, which is what the sweep test needs to be deterministic.
        "MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES": "0",
        "MAMORI_GATE_URL": mamori.url,
        "MAMORI_GATE_TOKEN": token.secret,
        "MAMORI_GATE_TIMEOUT_SECONDS": "2",
    }
    log = (root / "mlflow.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--app-name",
            "mamori-gate",
            "--workers",
            "1",
        ],
        env=env,
        cwd=root,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    # Everything from here on is undone even when setting up fails half-way, so that no
    # server outlives the test session.
    keys = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI")
    saved = {k: os.environ.get(k) for k in keys}
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{mlflow_url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail((root / "mlflow.log").read_text()[-5000:])
            time.sleep(0.5)
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN
        os.environ["MLFLOW_TRACKING_URI"] = mlflow_url
        mlflow = Mlflow(mlflow_url, process)
        created = mlflow.rest(
            ADMIN,
            "POST",
            "/api/2.0/mlflow/users/create",
            json={"username": ALICE[0], "password": ALICE[1]},
        )
        assert created.status_code == 200, created.text
        mamori.start()
        from mlflow.tracking import MlflowClient

        from mamori.lifecycle.mlflow.connect import connect

        result = connect(
            MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url),
            url=f"{mamori.url}/v1/hooks/mlflow",
            secret=SECRET,
            encryption_key_fixed=True,
        )
        assert result.ok, result.tests
        yield mlflow, mamori
    finally:
        if mamori.server is not None:
            mamori.stop()
        # ``mlflow server`` runs uvicorn as a child: end the whole process group.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        log.close()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@dataclass
class Plain:
    """A second ``mlflow server`` without the mamori-gate plugin or auth, and no webhook."""

    url: str

    def rest(self, method: str, path: str, **kwargs) -> httpx.Response:
        return httpx.request(method, f"{self.url}{path}", timeout=30, **kwargs)

    def set_alias(self, name, version, alias) -> httpx.Response:
        body = {"name": name, "version": version, "alias": alias}
        return self.rest("POST", "/api/2.0/mlflow/registered-models/alias", json=body)

    def integration(self, mamori: Mamori):
        """mamori's MLflow integration pointed at this server (same store as ``mamori``)."""
        from mamori.lifecycle.mlflow.events import build_integration

        settings = mamori.settings.model_copy(
            update={"mlflow_tracking_uri": self.url, "mlflow_reverify_minutes": 0}
        )
        return build_integration(settings, mamori.lifecycle)


@pytest.fixture(scope="session")
def plain(tmp_path_factory, stack) -> Iterator[Plain]:
    """Servers without the plugin exist: the sweep is what protects them."""
    root = tmp_path_factory.mktemp("mlflow-plain")
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAMORI_", "MLFLOW_"))}
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log = (root / "mlflow.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mlflow",
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination",
            str(root / "artifacts"),
            "--workers",
            "1",
        ],
        env=env,
        cwd=root,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail((root / "mlflow.log").read_text()[-5000:])
            time.sleep(0.5)
        yield Plain(url)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        log.close()


class _Reduce:
    """Unpickling this runs `true`; nothing in the tests ever unpickles it."""

    def __reduce__(self):
        return (os.system, ("true",))


def _register_model(name: str, *, malicious: bool, tracking_uri: str | None = None) -> str:
    """Log and register a tiny model in MLflow; return the new version number."""
    import mlflow

    if tracking_uri is None:
        return _log_model(name, malicious=malicious)
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(tracking_uri)
    try:
        return _log_model(name, malicious=malicious)
    finally:
        mlflow.set_tracking_uri(previous)


def _log_model(name: str, *, malicious: bool) -> str:
    import mlflow
    import mlflow.pyfunc

    if malicious:

        class Trojan(mlflow.pyfunc.PythonModel):
            def __init__(self) -> None:
                self.payload = _Reduce()

            # Type hints keep MLflow from warning (its warning bypasses warning filters);
            # the signature comes from the hints, predict itself is never called.
            def predict(self, context, model_input: list[str], params=None) -> list[str]:
                return model_input

        info = mlflow.pyfunc.log_model(
            name="model",
            python_model=Trojan(),
            pip_requirements=["mlflow"],
            registered_model_name=name,
        )
    else:
        import mlflow.sklearn
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        info = mlflow.sklearn.log_model(
            model,
            name="model",
            pip_requirements=["scikit-learn"],
            registered_model_name=name,
        )
    return str(info.registered_model_version)


@pytest.fixture(scope="session")
def register_model() -> Callable[..., str]:
    return _register_model


@pytest.fixture(scope="session")
def make_principal() -> Callable[..., Principal]:
    return principal


@pytest.fixture
def unique() -> Callable[[str], str]:
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"
