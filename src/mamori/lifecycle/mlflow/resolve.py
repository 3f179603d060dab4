"""Resolve a registry version to bytes: download every artifact file into quarantine and bind it.

A webhook payload names a version, not bytes (and in MLflow 3 it may carry ``source:
models:/m-…`` and no ``run_id``), so the version is looked up with
``MlflowClient.get_model_version`` and its artifacts are downloaded from the URI the registry
itself reports (``get_model_version_download_uri``). Every file (an MLflow pyfunc's
``python_model.pkl`` is a cloudpickle) is copied into the content-addressed quarantine and bound
as ``mlflow:<name>/<version>`` with its relative path, so the gate can require *all* of them.

The version is bound to the registry object (:class:`VersionIdentity`) and to the manifest
of its files (path, size, SHA-256). Resolving again (a rescan, or a webhook naming a version
whose identity changed: deleted and re-registered, or another model renamed onto the name)
replaces the bindings with exactly the files read now and records the new identity and
manifest; the bytes then need their own approval. Registry calls go through MLflow's
``ModelRegistryClient``: the public ``MlflowClient`` refuses most calls on a model tagged
``mlflow.prompt.is_prompt`` (``_raise_if_prompt``), a tag any EDIT user can set.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import structlog
from mlflow.artifacts import download_artifacts
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from mamori.errors import MamoriError, RegistryError
from mamori.identity.principal import Principal
from mamori.lifecycle.mlflow.gate import SOURCE
from mamori.lifecycle.mlflow.identity import (
    UNKNOWN_SIZE,
    Listing,
    ManifestEntry,
    RegistryFacts,
    VersionIdentity,
    manifest_difference,
)
from mamori.lifecycle.service import Lifecycle
from mamori.store.db import audit_append
from mamori.store.models import ArtifactRow, BindingRow
from mamori.store.models_mlflow import MlflowVersionRow, VersionStatus

__all__ = ["SYNC_PRINCIPAL", "Resolution", "Resolver", "registry_of"]

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


def registry_of(client: MlflowClient) -> Any:  # mlflow's ModelRegistryClient (untyped)
    """The registry client under ``client``, which does not refuse prompt-tagged models."""
    return client._get_registry_client()  # type: ignore[no-untyped-call]  # noqa: SLF001 - see the module docstring


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


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

    def bound(self, name: str, version: str) -> tuple[VersionIdentity | None, str]:
        """The bound identity (``None``: not resolved) and the recorded drift."""
        with self.lifecycle.store.read() as session:
            row = _row(session, name, version)
            if row is None or row.status is not VersionStatus.RESOLVED or row.identity is None:
                return None, ""
            return VersionIdentity.from_json(row.identity), row.drift or ""

    def resolve(self, name: str, version: str, *, force: bool = False) -> Resolution:
        """Bind this version's bytes; never raises for registry errors.

        A version already bound to the same registry object, with no drift recorded, is left
        alone unless ``force``.
        """
        registry = registry_of(self.client)
        try:
            model_version = registry.get_model_version(name, version)
            identity = VersionIdentity.of(model_version)
            bound, drift = self.bound(name, version)
            if not force and not drift and bound == identity:
                return Resolution(name, version, VersionStatus.RESOLVED)
            if model_version.status != _READY:
                return self._record(
                    name, version, VersionStatus.FAILED, error=f"status {model_version.status}"
                )
            uri = registry.get_model_version_download_uri(name, version)
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
            problem = problem or self._still(name, version, identity)
            if problem:
                return self._record(name, version, VersionStatus.FAILED, error=problem)
            manifest = []
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
                manifest.append(ManifestEntry(member, blob.size, blob.sha256))
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return self._record(
            name,
            version,
            VersionStatus.RESOLVED,
            digests=tuple(e.sha256 for e in manifest),
            bound=(identity, tuple(manifest)),
        )

    def _still(self, name: str, version: str, identity: VersionIdentity) -> str:
        """Why the bytes just read may not belong to ``identity`` ("" when they do)."""
        # A rename or re-create between reading the version and downloading its files would
        # bind one object's identity to another's bytes.
        try:
            now = VersionIdentity.of(registry_of(self.client).get_model_version(name, version))
        except MlflowException as exc:
            return f"re-reading the version after download: {exc.message[:300]}"
        changed = identity.difference(now)
        return f"changed during resolution: {changed}" if changed else ""

    # --- what the registry holds now -------------------------------------------------------

    def facts(self, name: str, version: str) -> RegistryFacts | str:
        """The version's current identity and artifact listing, or why they cannot be read."""
        registry = registry_of(self.client)
        try:
            identity = VersionIdentity.of(registry.get_model_version(name, version))
            uri = registry.get_model_version_download_uri(name, version)
            return RegistryFacts.from_listing(identity, self.listing(uri))
        except Exception as exc:  # noqa: BLE001 - any failure is a deny, with its reason
            return f"cannot read the registry's current version: {_error_text(exc)[:300]}"

    def listing(self, uri: str) -> Listing:
        """``(path, size)`` of every file the artifact store lists under ``uri``."""
        repo = get_artifact_repository(artifact_uri=uri, tracking_uri=self.tracking_uri)
        found: list[tuple[str, int]] = []
        folders: list[str | None] = [None]
        while folders:
            for info in repo.list_artifacts(folders.pop()):
                if len(found) + len(folders) > _MAX_LISTED:
                    msg = f"more than {_MAX_LISTED} artifact entries"
                    raise RegistryError(msg)
                if info.is_dir:
                    folders.append(info.path)
                else:
                    size = UNKNOWN_SIZE if info.file_size is None else int(info.file_size)
                    found.append((info.path, size))
        return tuple(sorted(found))

    def rehash(self, name: str, version: str) -> str:
        """Download the version again, hash every file, compare with the bound manifest.

        Returns the difference ("" when the bytes are the bound ones). A difference, or bytes
        that cannot be read, is recorded as drift: the version is undeployable until resolved
        again. Used by the sweep for versions holding a protected alias or stage only.
        """
        with self.lifecycle.store.read() as session:
            row = _row(session, name, version)
            if row is None or row.status is not VersionStatus.RESOLVED or row.manifest is None:
                return ""  # nothing bound: the gate already denies it
            bound = [ManifestEntry.from_json(e) for e in row.manifest]
            identity = None if row.identity is None else VersionIdentity.from_json(row.identity)
        problem = ""
        registry = registry_of(self.client)
        staging = Path(tempfile.mkdtemp(prefix="mlflow-verify-", dir=self.staging_dir))
        try:
            current = VersionIdentity.of(registry.get_model_version(name, version))
            problem = identity.difference(current) if identity is not None else ""
            if not problem:
                uri = registry.get_model_version_download_uri(name, version)
                local, problem = self._download(uri, staging)
                files, problem = self._files(local) if local is not None else ([], problem)
                now = [ManifestEntry(m, p.stat().st_size, _sha256(p)) for p, m in files]
                problem = problem or manifest_difference(bound, now)
        except Exception as exc:  # noqa: BLE001 - unreadable bytes cannot be vouched for
            problem = f"re-verification failed: {_error_text(exc)[:300]}"
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        self.record_drift(name, version, problem, origin="re-hash")
        return problem

    def record_drift(self, name: str, version: str, problem: str, *, origin: str) -> None:
        """Mark the version undeployable until rescanned (or verified, when ``problem`` is "")."""
        now = datetime.now(UTC)
        with self.lifecycle.store.write() as session:
            row = _row(session, name, version)
            if row is None:
                return
            if not problem:
                row.verified_at = now
                return
            if row.drift == problem:
                return
            row.drift = problem
            row.updated_at = now
            audit_append(
                session,
                principal="mamori|mlflow",
                action="mlflow-drift",
                resource=f"{SOURCE}:{name}/{version}",
                decision="not-deployable",
                policy_ids=("mamori-gate",),
                reason=f"{origin}: {problem}; undeployable until rescanned",
            )
        _log.warning("mlflow_drift", name=name, version=version, problem=problem, origin=origin)

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
        bound: tuple[VersionIdentity, tuple[ManifestEntry, ...]] | None = None,
    ) -> Resolution:
        now = datetime.now(UTC)
        with self.lifecycle.store.write() as session:
            row = _row(session, name, version)
            previous = None if row is None else row.status
            rebound = ""
            if bound is not None:
                rebound = _rebind(session, row, (name, version), bound)
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
            if bound is not None:
                row.identity = bound[0].to_json()
                row.manifest = [e.to_json() for e in bound[1]]
                row.drift = ""
                row.verified_at = now
            if rebound:
                audit_append(
                    session,
                    principal="mamori|mlflow",
                    action="mlflow-rebind",
                    resource=f"{SOURCE}:{name}/{version}",
                    decision=status.value,
                    reason=rebound,
                )
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


def _row(session: Session, name: str, version: str) -> MlflowVersionRow | None:
    return session.execute(
        select(MlflowVersionRow).where(
            MlflowVersionRow.name == name, MlflowVersionRow.version == version
        )
    ).scalar()


def _rebind(
    session: Session,
    row: MlflowVersionRow | None,
    key: tuple[str, str],
    bound: tuple[VersionIdentity, tuple[ManifestEntry, ...]],
) -> str:
    """Drop every binding of the version that is not in ``manifest``; say what changed."""
    (name, version), (identity, manifest) = key, bound
    keep = {(e.sha256, e.path) for e in manifest}
    stale = [
        binding_id
        for binding_id, sha, member in session.execute(
            select(BindingRow.id, ArtifactRow.sha256, BindingRow.member_path)
            .join(ArtifactRow, BindingRow.artifact_id == ArtifactRow.id)
            .where(
                BindingRow.source == SOURCE,
                BindingRow.name == name,
                BindingRow.version == version,
            )
        )
        if (sha, member) not in keep
    ]
    if stale:
        session.execute(delete(BindingRow).where(BindingRow.id.in_(stale)))
    if row is None or row.identity is None:
        return f"{len(stale)} stale binding(s) dropped" if stale else ""
    before = VersionIdentity.from_json(row.identity)
    changed = before.difference(identity)
    old = [ManifestEntry.from_json(e) for e in row.manifest or []]
    changed = "; ".join(x for x in (changed, manifest_difference(old, manifest)) if x)
    if not changed and not stale:
        return ""
    return f"bound again to the registry's current object and bytes: {changed or 'unchanged'}"
