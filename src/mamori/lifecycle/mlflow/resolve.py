"""Resolve a registry version to bytes: download every artifact file into quarantine and bind it.

A webhook payload names a version, not bytes (and in MLflow 3 it may carry ``source:
models:/m-…`` and no ``run_id``), so the version is looked up with
``MlflowClient.get_model_version`` and its artifacts are downloaded from the URI the registry
itself reports (``get_model_version_download_uri``). Every file (an MLflow pyfunc's
``python_model.pkl`` is a cloudpickle) is copied into the content-addressed quarantine and bound
as ``mlflow:<name>/<version>`` with its relative path, so the gate can require *all* of them.

Re-resolving a version whose files changed in place adds bindings to the new digests and keeps
the old ones: :meth:`Lifecycle.gate_binding` then requires the new, unreviewed bytes to be
approved too (fail closed).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Final

import structlog
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from sqlalchemy import select

from mamori.errors import MamoriError, RegistryError
from mamori.identity.principal import Principal
from mamori.lifecycle.mlflow.gate import SOURCE
from mamori.lifecycle.service import Lifecycle
from mamori.store.db import audit_append
from mamori.store.models_mlflow import MlflowVersionRow, VersionStatus

__all__ = ["SYNC_PRINCIPAL", "Resolution", "Resolver"]

_log = structlog.get_logger("mamori.mlflow")

SYNC_PRINCIPAL: Final = Principal(
    subject="mlflow-sync",
    issuer="mamori",
    tenant="",
    roles=frozenset(),
    attributes=MappingProxyType({}),
)
"""Who imports MLflow artifacts (never an approver: four-eyes holds for every human)."""

_READY: Final = "READY"
_NOT_FOUND: Final = "RESOURCE_DOES_NOT_EXIST"


_MAX_LISTED: Final = 100_000
"""Artifact entries listed per version before the listing is refused as hostile."""


def _error_text(exc: Exception) -> str:
    if isinstance(exc, MlflowException):
        return str(exc.message)
    if isinstance(exc, MamoriError):
        return exc.diagnostics()
    return repr(exc)


@dataclass(frozen=True, slots=True)
class Resolution:
    """What resolving one version did."""

    name: str
    version: str
    status: VersionStatus
    digests: tuple[str, ...] = ()
    error: str = ""


class Resolver:
    """Turns ``name``/``version`` into bound, quarantined, queued-for-scan artifacts."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        client: MlflowClient,
        *,
        tracking_uri: str,
        staging_dir: Path,
        max_bytes: int,
    ) -> None:
        """Download through ``client`` into ``staging_dir``; refuse versions over ``max_bytes``."""
        self.lifecycle = lifecycle
        self.client = client
        self.tracking_uri = tracking_uri
        self.staging_dir = staging_dir
        self.max_bytes = max_bytes
        staging_dir.mkdir(parents=True, exist_ok=True)

    def status(self, name: str, version: str) -> VersionStatus | None:
        """What the store knows about this version (``None``: never seen)."""
        with self.lifecycle.store.read() as session:
            return session.execute(
                select(MlflowVersionRow.status).where(
                    MlflowVersionRow.name == name, MlflowVersionRow.version == version
                )
            ).scalar()

    def resolve(self, name: str, version: str, *, force: bool = False) -> Resolution:
        """Bind this version's bytes (again when ``force``); never raises for registry errors."""
        if not force and self.status(name, version) is VersionStatus.RESOLVED:
            return Resolution(name, version, VersionStatus.RESOLVED)
        try:
            model_version = self.client.get_model_version(name, version)
            if model_version.status != _READY:
                return self._record(
                    name, version, VersionStatus.FAILED, error=f"status {model_version.status}"
                )
            uri = self.client.get_model_version_download_uri(name, version)
        except MlflowException as exc:
            gone = exc.error_code == _NOT_FOUND
            return self._record(
                name,
                version,
                VersionStatus.GONE if gone else VersionStatus.FAILED,
                error=exc.message[:500],
            )
        staging = Path(tempfile.mkdtemp(prefix="mlflow-", dir=self.staging_dir))
        try:
            local, problem = self._download(uri, staging)
            files, problem = self._files(local) if local is not None else ([], problem)
            if problem:
                return self._record(name, version, VersionStatus.FAILED, error=problem)
            digests = []
            for path, member in files:
                blob = self.lifecycle.blobs.put_file(path)
                self.lifecycle.register(
                    SYNC_PRINCIPAL,
                    blob,
                    source=SOURCE,
                    name=name,
                    version=version,
                    member_path=member,
                )
                digests.append(blob.sha256)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self._record(name, version, VersionStatus.RESOLVED, digests=tuple(digests))

    def _download(self, uri: str, staging: Path) -> tuple[Path | None, str]:
        """Download into ``staging`` unless the listing already exceeds the limit."""
        # NOTE: any failure leaves the version unbound (the gate denies); it is recorded and
        # the sweep retries it, so both handlers below catch everything.
        try:
            listed = self._listed_size(uri)
        except Exception as exc:  # noqa: BLE001 - see NOTE
            return None, f"list: {_error_text(exc)[:480]}"
        if listed > self.max_bytes:
            return None, f"artifacts exceed {self.max_bytes} bytes (listed); not downloaded"
        try:
            local = download_artifacts(
                artifact_uri=uri, dst_path=str(staging), tracking_uri=self.tracking_uri
            )
        except Exception as exc:  # noqa: BLE001 - see NOTE
            return None, f"download: {_error_text(exc)[:480]}"
        return Path(local), ""

    def _listed_size(self, uri: str) -> int:
        """Bytes the artifact store lists under ``uri``, counted before anything is downloaded.

        Stops counting past the limit. A store that reports no sizes counts as 0 here; the
        downloaded bytes are measured again in :meth:`_files`, which is what binds.
        """
        repo = get_artifact_repository(artifact_uri=uri, tracking_uri=self.tracking_uri)
        total, entries = 0, 0
        folders: list[str | None] = [None]
        while folders and total <= self.max_bytes:
            for info in repo.list_artifacts(folders.pop()):
                entries += 1
                if entries > _MAX_LISTED:
                    msg = f"more than {_MAX_LISTED} artifact entries"
                    raise RegistryError(msg)
                if info.is_dir:
                    folders.append(info.path)
                else:
                    total += info.file_size or 0
        return total

    def _files(self, root: Path) -> tuple[list[tuple[Path, str]], str]:
        if root.is_file():
            return [(root, root.name)], ""
        found: list[tuple[Path, str]] = []
        total = 0
        for folder, dirs, names in os.walk(root, followlinks=False):
            for entry in [*dirs, *names]:
                full = Path(folder) / entry
                if full.is_symlink():
                    # Downloads never create links; one here means the artifact store is
                    # hostile or odd. Refuse rather than scan the wrong bytes.
                    return [], f"artifact {full.relative_to(root)} is a symbolic link"
            for entry in sorted(names):
                full = Path(folder) / entry
                total += full.stat().st_size
                if total > self.max_bytes:
                    return [], f"artifacts exceed {self.max_bytes} bytes"
                found.append((full, full.relative_to(root).as_posix()))
        if not found:
            return [], "the version has no artifact files"
        return found, ""

    def _record(
        self,
        name: str,
        version: str,
        status: VersionStatus,
        *,
        digests: tuple[str, ...] = (),
        error: str = "",
    ) -> Resolution:
        now = datetime.now(UTC)
        with self.lifecycle.store.write() as session:
            row = session.execute(
                select(MlflowVersionRow).where(
                    MlflowVersionRow.name == name, MlflowVersionRow.version == version
                )
            ).scalar()
            previous = None if row is None else row.status
            if row is None:
                row = MlflowVersionRow(
                    name=name, version=version, status=status, files=0, attempts=0, updated_at=now
                )
                session.add(row)
            row.status = status
            row.attempts = (row.attempts or 0) + 1
            row.files = len(digests) if status is VersionStatus.RESOLVED else row.files or 0
            row.error = error or None
            row.mirrored = row.mirrored or ""
            row.last_alert = row.last_alert or ""
            row.updated_at = now
            if previous is not status:
                audit_append(
                    session,
                    principal="mamori|mlflow",
                    action="mlflow-resolve",
                    resource=f"{SOURCE}:{name}/{version}",
                    decision=status.value,
                    reason=error or f"{len(digests)} artifact file(s) bound",
                )
        if error:
            _log.warning("mlflow_resolve", name=name, version=version, status=status, error=error)
        return Resolution(name, version, status, digests, error)
