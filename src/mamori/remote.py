"""Scan what a URL names: fetch it into a temporary quarantine, hand back the local path, remove it.

``mamori scan`` accepts, besides paths:

* ``hf://org/repo[@revision]``: the revision is resolved to a commit first, the tree listed,
  and every file downloaded through the same verified client as ``mamori pull`` (LFS SHA-256
  or git blob id checked against the tree); the directory is scanned as one artifact.
* ``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``: MLflow's own artifact download, from
  ``MAMORI_MLFLOW_TRACKING_URI`` (or ``MLFLOW_TRACKING_URI``).
* ``s3://bucket/key`` (one object) or ``s3://bucket/prefix/`` (every object under it): boto3,
  with its usual credentials and ``AWS_ENDPOINT_URL`` for S3-compatible servers.
* ``https://…`` (and ``http://…``): one file, streamed.

Nothing fetched is ever loaded: the bytes go to a private temporary directory (mode 0700),
are scanned like a local path, and the directory is removed afterwards, also on error. Every
network call has a timeout and every error names the URL (credentials masked). The report
keeps the URL as its path and the digests of the bytes that were scanned.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import posixpath
import re
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final
from urllib.parse import unquote, urlsplit

from mamori.errors import ConfigError, RegistryError

__all__ = ["DEFAULT_TIMEOUT_S", "Fetched", "fetched", "is_remote"]

DEFAULT_TIMEOUT_S: Final = 30.0
"""Seconds any one network operation (connect, or a read) may take."""
MAX_BYTES: Final = 64 << 30
"""The most one remote artifact may download (all its files together)."""

_SCHEMES: Final = ("hf://", "models:/", "s3://", "https://", "http://")
_CHUNK: Final = 1 << 20
_USERINFO: Final = re.compile(r"(\w+://)[^/@\s]+@")
_SAFE_NAME: Final = re.compile(r"[^A-Za-z0-9._-]")

Progress = Callable[[int, int | None], None]


@dataclass(frozen=True, slots=True)
class Fetched:
    """A remote artifact in the quarantine: scan ``path``, report ``url``."""

    url: str
    path: Path
    note: str
    """Where the bytes came from exactly (commit, version, object count), for the report."""


def is_remote(target: str) -> bool:
    """True when ``target`` is a URL ``mamori scan`` fetches rather than a local path."""
    return target.startswith(_SCHEMES)


def redact(url: str) -> str:
    """``url`` without a ``user:password@`` part."""
    return _USERINFO.sub(r"\1***@", url)


@contextlib.contextmanager
def fetched(
    url: str, *, timeout: float = DEFAULT_TIMEOUT_S, progress: Progress | None = None
) -> Iterator[Fetched]:
    """Download ``url`` into a fresh quarantine directory; remove it when the block ends.

    Raises:
        RegistryError: the source is unreachable, refuses, times out, or serves more than
            :data:`MAX_BYTES`; the message names the URL.
        ConfigError: the URL is malformed.
    """
    quarantine = Path(tempfile.mkdtemp(prefix="mamori-remote-"))
    try:
        yield _fetch(url, quarantine, timeout, progress)
    finally:
        shutil.rmtree(quarantine, ignore_errors=True)


def _fetch(url: str, quarantine: Path, timeout: float, progress: Progress | None) -> Fetched:
    try:
        if url.startswith("hf://"):
            return _hf(url, quarantine, timeout, progress)
        if url.startswith("models:/"):
            return _mlflow(url, quarantine, timeout)
        if url.startswith("s3://"):
            return _s3(url, quarantine, timeout, progress)
        if url.startswith(("https://", "http://")):
            return _http(url, quarantine, timeout, progress)
    except RegistryError as exc:
        if redact(url) in str(exc):
            raise
        # Every error names the URL the user gave, whatever layer raised it.
        msg = f"{redact(url)}: {exc}"
        raise RegistryError(msg) from exc
    msg = f"{redact(url)}: not a URL mamori can fetch ({', '.join(_SCHEMES)})"
    raise ConfigError(msg)


def _file_name(path: str, fallback: str = "download") -> str:
    # Keep the extension (a format hint for the report) but nothing that could leave the
    # quarantine or confuse a terminal.
    base = posixpath.basename(unquote(path).rstrip("/")) or fallback
    name = _SAFE_NAME.sub("_", base).lstrip(".")
    return name[:200] or fallback


def _copy_stream(
    read: Callable[[int], bytes], dest: Path, url: str, total: int | None, progress: Progress | None
) -> str:
    hasher = hashlib.sha256()
    done = 0
    with open(dest, "xb") as out:
        while chunk := read(_CHUNK):
            done += len(chunk)
            if done > MAX_BYTES:
                msg = f"{redact(url)}: larger than {MAX_BYTES} bytes; refused"
                raise RegistryError(msg)
            hasher.update(chunk)
            out.write(chunk)
            if progress is not None:
                progress(done, total)
    return hasher.hexdigest()


# --- https -----------------------------------------------------------------------------------


def _http(url: str, quarantine: Path, timeout: float, progress: Progress | None) -> Fetched:
    dest = quarantine / _file_name(urlsplit(url).path)
    request = urllib.request.Request(url, headers={"User-Agent": "mamori-scan"})  # noqa: S310 -- the scheme is checked by the caller: http(s) only
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            sha256 = _copy_stream(response.read, dest, url, total, progress)
    except urllib.error.HTTPError as exc:
        exc.close()  # it holds the response's socket
        msg = f"{redact(url)}: HTTP {exc.code} {exc.reason}"
        raise RegistryError(msg) from exc
    except (urllib.error.URLError, TimeoutError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        msg = f"{redact(url)}: cannot download: {reason}"
        raise RegistryError(msg) from exc
    return Fetched(url, dest, f"fetched from {redact(url)} (sha256 {sha256})")


# --- Hugging Face ----------------------------------------------------------------------------


def _hf(url: str, quarantine: Path, timeout: float, progress: Progress | None) -> Fetched:
    from mamori.config import load_settings  # noqa: PLC0415 -- lazy: pydantic-settings
    from mamori.lifecycle.hf.client import HubClient  # noqa: PLC0415 -- lazy: httpx
    from mamori.lifecycle.hf.policy import repo_id_problem  # noqa: PLC0415

    spec = url.removeprefix("hf://")
    repo_id, _, revision = spec.partition("@")
    revision = revision or "main"
    if problem := repo_id_problem(repo_id):
        msg = f"{url}: {problem}"
        raise ConfigError(msg)
    settings = load_settings()
    token = settings.hf_token.get_secret_value() if settings.hf_token else None
    root = quarantine / "repo"
    with HubClient(
        settings.hf_endpoint,
        token=token,
        redirect_hosts=settings.hf_redirect_hosts,
        timeout=min(timeout, settings.hf_timeout_seconds),
    ) as client:
        commit = client.resolve_commit(repo_id, revision)
        entries = client.list_tree(repo_id, commit, max_files=100_000)
        total = sum(e.size for e in entries)
        if total > min(MAX_BYTES, settings.hf_max_total_bytes):
            msg = f"{url}: the tree holds {total} bytes; refused"
            raise RegistryError(msg)
        done = 0
        for entry in entries:
            dest = root / entry.path
            dest.parent.mkdir(parents=True, exist_ok=True)
            client.download(repo_id, commit, entry, dest)
            done += entry.size
            if progress is not None:
                progress(done, total)
    root.mkdir(exist_ok=True)
    note = f"fetched from hf://{repo_id}@{commit} ({len(entries)} files, verified against the tree)"
    return Fetched(url, root, note)


# --- MLflow ----------------------------------------------------------------------------------


def _mlflow(url: str, quarantine: Path, timeout: float) -> Fetched:
    from mamori.config import load_settings  # noqa: PLC0415 -- lazy: pydantic-settings

    tracking = load_settings().mlflow_tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not tracking:
        msg = f"{url}: set MAMORI_MLFLOW_TRACKING_URI (or MLFLOW_TRACKING_URI) to resolve it"
        raise ConfigError(msg)
    from mamori.lifecycle.mlflow.http import bounded_http  # noqa: PLC0415 -- the mlflow extra

    limits = {
        "MLFLOW_HTTP_REQUEST_TIMEOUT": str(int(timeout)),
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1",
    }
    with bounded_http(limits):
        import mlflow.artifacts  # noqa: PLC0415 -- optional extra [mlflow]
        from mlflow.exceptions import MlflowException  # noqa: PLC0415
        from mlflow.tracking import MlflowClient  # noqa: PLC0415

        from mamori.lifecycle.verify import parse_target  # noqa: PLC0415 -- one URI grammar

        target = parse_target(url)
        # The registry is named explicitly: MLflow's process-wide registry URI (set by anything
        # else in the process) must never decide which server a models:/ URI resolves on.
        client = MlflowClient(tracking_uri=tracking, registry_uri=tracking)
        try:
            if target.ref.startswith("@"):
                version = str(
                    client.get_model_version_by_alias(target.name, target.ref[1:]).version
                )
            else:
                version = target.ref
            source = client.get_model_version_download_uri(target.name, version)
            local = mlflow.artifacts.download_artifacts(
                artifact_uri=source, dst_path=str(quarantine / "model"), tracking_uri=tracking
            )
        except (MlflowException, OSError) as exc:
            msg = f"{url} (tracking {redact(tracking)}): {' '.join(str(exc).split())[:500]}"
            raise RegistryError(msg) from exc
    return Fetched(url, Path(local), f"fetched from {url} via {redact(tracking)}")


# --- S3 --------------------------------------------------------------------------------------


def _s3_client(timeout: float) -> Any:
    import boto3  # noqa: PLC0415 -- optional extra [s3]
    from botocore.config import Config  # noqa: PLC0415

    config = Config(
        connect_timeout=timeout,
        read_timeout=timeout,
        retries={"max_attempts": 2, "mode": "standard"},
    )
    return boto3.client("s3", config=config)


def _s3(url: str, quarantine: Path, timeout: float, progress: Progress | None) -> Fetched:
    from botocore.exceptions import BotoCoreError, ClientError  # noqa: PLC0415

    parts = urlsplit(url)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket:
        msg = f"{url}: no bucket"
        raise ConfigError(msg)
    client = _s3_client(timeout)
    try:
        if key and not key.endswith("/"):
            dest = quarantine / _file_name(key)
            head = client.head_object(Bucket=bucket, Key=key)
            body = client.get_object(Bucket=bucket, Key=key)["Body"]
            sha256 = _copy_stream(body.read, dest, url, int(head["ContentLength"]), progress)
            return Fetched(url, dest, f"fetched from {url} (sha256 {sha256})")
        root = quarantine / "prefix"
        count = _s3_prefix(client, bucket, key, root=root, url=url, progress=progress)
    except (BotoCoreError, ClientError) as exc:
        msg = f"{url}: {exc}"
        raise RegistryError(msg) from exc
    return Fetched(url, root, f"fetched from {url} ({count} objects)")


def _s3_prefix(
    client: Any, bucket: str, prefix: str, *, root: Path, url: str, progress: Progress | None
) -> int:
    root.mkdir()
    done = count = 0
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", ()):
            relative = item["Key"][len(prefix) :]
            parts = [p for p in relative.split("/") if p]
            if not parts or any(p in {".", ".."} for p in parts):
                continue  # a "folder" marker, or a key that would leave the quarantine
            dest = root.joinpath(*parts)
            dest.parent.mkdir(parents=True, exist_ok=True)
            body = client.get_object(Bucket=bucket, Key=item["Key"])["Body"]
            done += int(item["Size"])
            if done > MAX_BYTES:
                msg = f"{url}: larger than {MAX_BYTES} bytes; refused"
                raise RegistryError(msg)
            _copy_stream(body.read, dest, url, None, None)
            count += 1
            if progress is not None:
                progress(done, None)
    return count
