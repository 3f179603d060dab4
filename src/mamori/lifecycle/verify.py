"""Verify before load: hash the bytes a consumer would load and ask the gate for exactly those.

A deploy step or a serving container runs this immediately before it loads a model. It does
not trust a registry name, a tag or an earlier verdict about a *name*: it reads the files
(``models:/NAME@ALIAS`` or ``models:/NAME/VERSION`` downloaded from MLflow, an
``hf://org/repo@rev`` snapshot in the local Hugging Face cache, or a local path), hashes
every one, and asks the gate about each digest. The answer is yes only when every file is
deployable and, for a registry source, the files are exactly the bound manifest (no file
added, removed or changed) of the registry object mamori bound.

The gate is asked either in process (:class:`StoreGate`, with the store) or over HTTP
(:class:`HttpGate`, ``GET /v1/gate?digest=`` with a ``gate``-scoped token): a serving pod
usually has only the latter.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Protocol, Self

import httpx
from sqlalchemy import select

from mamori.config import Settings
from mamori.errors import ConfigError, RegistryError
from mamori.lifecycle.mlflow.identity import ManifestEntry, manifest_difference
from mamori.lifecycle.service import Lifecycle
from mamori.lifecycle.views import GateResult
from mamori.store.models import ArtifactRow, BindingRow
from mamori.store.models_mlflow import MlflowVersionRow, VersionStatus

__all__ = [
    "Gate",
    "HttpGate",
    "StoreGate",
    "VerifiedFile",
    "VerifyResult",
    "hash_tree",
    "parse_target",
    "verify",
    "verify_files",
    "verify_hf",
    "verify_mlflow",
]

_CHUNK: Final = 1 << 20
_MODELS: Final = re.compile(
    r"^models:/(?P<name>[^@/][^@]*?)(?:@(?P<alias>[^@/]+)|/(?P<version>[1-9][0-9]*))$"
)
_HF: Final = re.compile(r"^hf://(?P<repo>[A-Za-z0-9][\w.-]*/[\w.-]+)(?:@(?P<rev>[\w./-]+))?$")


@dataclass(frozen=True, slots=True)
class Target:
    """What to verify, parsed from the command line."""

    kind: str  # "mlflow", "hf" or "path"
    name: str
    ref: str = ""
    """MLflow: ``@alias`` or a version number; HF: the revision."""


def parse_target(text: str) -> Target:
    """``models:/NAME@ALIAS``, ``models:/NAME/VERSION``, ``hf://org/repo[@rev]`` or a path."""
    if text.startswith("models:/"):
        found = _MODELS.fullmatch(text)
        if found is None:
            msg = f"not a models:/NAME@ALIAS or models:/NAME/VERSION URI: {text[:200]!r}"
            raise ConfigError(msg)
        if found["alias"]:
            return Target("mlflow", found["name"], "@" + found["alias"])
        return Target("mlflow", found["name"], found["version"])
    if text.startswith("hf://"):
        found = _HF.fullmatch(text)
        if found is None:
            msg = f"not an hf://org/repo@revision URI: {text[:200]!r}"
            raise ConfigError(msg)
        return Target("hf", found["repo"], found["rev"] or "main")
    return Target("path", text)


@dataclass(frozen=True, slots=True)
class VerifiedFile:
    """One file as read, and the gate's answer for its digest."""

    path: str
    size: int
    sha256: str
    allowed: bool
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Whether the bytes read may be loaded, and why."""

    target: str
    deployable: bool
    reason: str
    files: tuple[VerifiedFile, ...]


class Gate(Protocol):
    """Answers for exact digests (and, when it can see the store, for registry manifests)."""

    def digest(self, sha256: str) -> GateResult:
        """May these exact bytes be deployed?"""
        ...

    def manifest(self, source: str, name: str, version: str) -> list[ManifestEntry] | None:
        """The bound manifest of a registry object, or ``None`` when this gate cannot tell."""
        ...


class StoreGate:
    """The gate in process, over the store."""

    def __init__(self, lifecycle: Lifecycle) -> None:
        """Ask ``lifecycle``."""
        self.lifecycle = lifecycle

    def digest(self, sha256: str) -> GateResult:
        """:meth:`Lifecycle.gate` for this digest."""
        return self.lifecycle.gate(sha256)

    def manifest(self, source: str, name: str, version: str) -> list[ManifestEntry] | None:
        """MLflow: the recorded manifest (empty when drifted or unbound); HF: the bindings."""
        with self.lifecycle.store.read() as session:
            if source == "mlflow":
                row = session.execute(
                    select(MlflowVersionRow).where(
                        MlflowVersionRow.name == name, MlflowVersionRow.version == version
                    )
                ).scalar()
                if row is None or row.status is not VersionStatus.RESOLVED or row.drift:
                    return []
                return [ManifestEntry.from_json(e) for e in row.manifest or []]
            rows = session.execute(
                select(BindingRow.member_path, ArtifactRow.size, ArtifactRow.sha256)
                .join(ArtifactRow, BindingRow.artifact_id == ArtifactRow.id)
                .where(
                    BindingRow.source == source,
                    BindingRow.name == name,
                    BindingRow.version == version,
                )
            ).all()
            return [ManifestEntry(m, int(s), d) for m, s, d in rows]


class HttpGate:
    """The gate over HTTP (``GET /v1/gate?digest=``), as a serving pod reaches it."""

    def __init__(self, url: str, token: str, *, timeout: float = 10.0) -> None:
        """Ask the mamori API at ``url`` with a ``gate``-scoped API token."""
        self.client = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
        )

    def digest(self, sha256: str) -> GateResult:
        """One question per digest; anything but a clear 200 yes is a no."""
        try:
            response = self.client.get("/v1/gate", params={"digest": sha256})
            body = response.json() if response.status_code == httpx.codes.OK else {}
        except (httpx.HTTPError, ValueError) as exc:
            msg = f"the mamori gate did not answer: {type(exc).__name__}"
            raise RegistryError(msg) from exc
        if response.status_code != httpx.codes.OK:
            msg = f"the mamori gate answered HTTP {response.status_code}"
            raise RegistryError(msg)
        return GateResult(allowed=body.get("allowed") is True, reason=str(body.get("reason", "")))

    def manifest(self, source: str, name: str, version: str) -> list[ManifestEntry] | None:
        """Not available over HTTP: each digest is still checked."""
        del source, name, version
        return None

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_tree(root: Path) -> list[ManifestEntry]:
    """Every file under ``root`` (or ``root`` itself), hashed as a loader would read it.

    File symlinks are followed (a Hugging Face snapshot is made of them); a symlinked folder
    is refused, since the tree it leads to is not the one named.
    """
    if root.is_file():
        return [ManifestEntry(root.name, root.stat().st_size, _sha256(root))]
    if not root.is_dir():
        msg = f"{root}: no such file or directory"
        raise ConfigError(msg)
    found: list[ManifestEntry] = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        for name in dirs:
            if (Path(folder) / name).is_symlink():
                msg = f"{Path(folder, name).relative_to(root)} is a symlinked folder"
                raise RegistryError(msg)
        for name in sorted(names):
            full = Path(folder) / name
            if not full.is_file():
                msg = f"{full.relative_to(root)} is not a regular file (or a dangling link)"
                raise RegistryError(msg)
            path = full.relative_to(root).as_posix()
            found.append(ManifestEntry(path, full.stat().st_size, _sha256(full)))
    return sorted(found, key=lambda e: e.path)


def verify_files(
    gate: Gate,
    label: str,
    files: Sequence[ManifestEntry],
    *,
    binding: tuple[str, str, str] | None = None,
) -> VerifyResult:
    """Ask the gate about every file; when ``binding`` is given, require its exact manifest."""
    if not files:
        return VerifyResult(label, deployable=False, reason="no files to verify", files=())
    checked = []
    for entry in files:
        answer = gate.digest(entry.sha256)
        checked.append(
            VerifiedFile(entry.path, entry.size, entry.sha256, answer.allowed, answer.reason)
        )
    denied = [f for f in checked if not f.allowed]
    reason = ""
    if binding is not None:
        bound = gate.manifest(*binding)
        if bound is not None and not bound:
            reason = (
                f"{binding[0]}:{binding[1]}/{binding[2]} has no current binding in mamori "
                "(never resolved, or drifted and not yet rescanned)"
            )
        elif bound is not None:
            reason = manifest_difference(bound, files)
    if not reason and denied:
        first = denied[0]
        reason = f"{len(denied)} file(s) not deployable; {first.path}: {first.reason}"
    return VerifyResult(
        label,
        deployable=not reason,
        reason=reason or f"all {len(checked)} file(s) are deployable",
        files=tuple(checked),
    )


def verify_hf(gate: Gate, cache_dir: Path, repo_id: str, revision: str) -> VerifyResult:
    """The snapshot ``from_pretrained(repo, revision)`` would load from the local cache."""
    from mamori.lifecycle.hf.cache import repo_cache_dir  # noqa: PLC0415 - keeps imports light
    from mamori.lifecycle.hf.policy import is_commit_sha  # noqa: PLC0415

    root = repo_cache_dir(cache_dir, repo_id)
    commit = revision
    if not is_commit_sha(revision):
        ref = root / "refs" / revision
        if not ref.is_file():
            msg = f"hf://{repo_id}@{revision}: not in the cache {cache_dir} (no refs/{revision})"
            raise ConfigError(msg)
        commit = ref.read_text().strip()
    snapshot = root / "snapshots" / commit
    if not snapshot.is_dir():
        msg = f"hf://{repo_id}@{commit}: no snapshot in the cache {cache_dir}"
        raise ConfigError(msg)
    files = hash_tree(snapshot)
    return verify_files(gate, f"hf://{repo_id}@{commit}", files, binding=("hf", repo_id, commit))


def verify_mlflow(
    gate: Gate, client: object, tracking_uri: str, target: Target, staging: Path
) -> VerifyResult:
    """Download the version ``models:/NAME@ALIAS`` resolves to now, hash it, ask the gate."""
    from mlflow.artifacts import download_artifacts  # noqa: PLC0415 - the mlflow extra
    from mlflow.exceptions import MlflowException  # noqa: PLC0415

    from mamori.lifecycle.mlflow.resolve import registry_of  # noqa: PLC0415

    registry = registry_of(client)  # type: ignore[arg-type]
    try:
        if target.ref.startswith("@"):
            version = str(registry.get_model_version_by_alias(target.name, target.ref[1:]).version)
        else:
            version = target.ref
        uri = registry.get_model_version_download_uri(target.name, version)
    except MlflowException as exc:
        msg = f"MLflow: {exc.message}"
        raise RegistryError(msg) from exc
    staging.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="verify-", dir=staging))
    try:
        try:
            local = download_artifacts(
                artifact_uri=uri, dst_path=str(folder), tracking_uri=tracking_uri
            )
        except MlflowException as exc:
            msg = f"MLflow download failed: {exc.message}"
            raise RegistryError(msg) from exc
        files = hash_tree(Path(local))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    label = f"models:/{target.name}/{version}"
    return verify_files(gate, label, files, binding=("mlflow", target.name, version))


def verify(gate: Gate, text: str, *, settings: Settings) -> VerifyResult:
    """Verify ``text`` (see :func:`parse_target`) with ``settings`` for caches and MLflow."""
    target = parse_target(text)
    try:
        if target.kind == "hf":
            return verify_hf(gate, settings.hf_cache_dir, target.name, target.ref)
        if target.kind == "mlflow":
            if not settings.mlflow_tracking_uri:
                raise ConfigError("set MAMORI_MLFLOW_TRACKING_URI to verify a models:/ URI")
            from mlflow.tracking import MlflowClient  # noqa: PLC0415

            uri = settings.mlflow_tracking_uri
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            staging = settings.data_dir / "verify-staging"
            return verify_mlflow(gate, client, uri, target, staging)
        path = Path(target.name)
        return verify_files(gate, str(path), hash_tree(path))
    except OSError as exc:
        msg = f"{text}: {exc.strerror or exc}"
        raise RegistryError(msg) from exc
