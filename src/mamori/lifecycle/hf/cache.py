"""Release verified, scanned files into the standard Hugging Face cache layout.

The layout is the one ``huggingface_hub.file_download.hf_hub_download`` writes (2.x)::

    <cache>/models--<org>--<name>/
        blobs/<etag>                         the bytes; etag = LFS sha256, else the git blob id
        snapshots/<commit>/<path>            relative symlink to ../../blobs/<etag>
        refs/<revision>                      the commit sha (only when revision is not a sha)

so ``from_pretrained(repo, local_files_only=True)`` and ``HF_HUB_OFFLINE=1`` find the files.

Every write goes to a temporary name in the destination directory and is renamed into place,
so a crash never leaves a partial blob under its final name. The ref is written last: until it
points at the commit, nobody resolving ``main`` sees the new snapshot. An existing blob is
trusted only if its bytes match the digest it is named after; otherwise it is replaced.

The snapshot directory must end up holding exactly the scanned files: an entry another tool
left there (a ``pytorch_model.bin`` nobody scanned) would be loaded as part of the "released"
model. Such entries are removed, and :class:`Release` names them so the pull reports it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from mamori.errors import RegistryError
from mamori.lifecycle.hf.client import git_blob_oid
from mamori.lifecycle.hf.policy import TreeEntry, is_commit_sha

__all__ = ["Release", "ReleasedFile", "release", "repo_cache_dir"]

_CHUNK: Final = 1 << 20


@dataclass(frozen=True, slots=True)
class ReleasedFile:
    """A verified file to release: its tree entry and the quarantined bytes."""

    entry: TreeEntry
    source: Path


@dataclass(frozen=True, slots=True)
class Release:
    """Where the snapshot is, and which unscanned entries were removed from it."""

    snapshot: Path
    removed: tuple[str, ...]


def repo_cache_dir(cache_dir: Path, repo_id: str) -> Path:
    """``<cache>/models--org--name`` (``huggingface_hub.file_download.repo_folder_name``)."""
    return cache_dir / "--".join(["models", *repo_id.split("/")])


def release(
    cache_dir: Path, repo_id: str, commit: str, revision: str, files: Sequence[ReleasedFile]
) -> Release:
    """Copy ``files`` into the cache, link the snapshot, then point ``refs/<revision>`` at it.

    Every entry of ``snapshots/<commit>/`` that is not one of ``files`` is removed first.
    """
    if not is_commit_sha(commit):
        msg = f"not a commit sha: {commit[:80]!r}"
        raise RegistryError(msg)
    root = repo_cache_dir(cache_dir, repo_id)
    blobs = root / "blobs"
    snapshot = root / "snapshots" / commit
    try:
        blobs.mkdir(parents=True, exist_ok=True)
        snapshot.mkdir(parents=True, exist_ok=True)
        if snapshot.is_symlink() or not snapshot.is_dir():
            msg = f"{snapshot} is not a plain directory; refusing to release into it"
            raise RegistryError(msg)
        removed = _remove_strays(snapshot, {item.entry.path for item in files})
        for item in files:
            etag = item.entry.lfs_sha256 or item.entry.git_oid
            blob = blobs / etag
            if not _holds(blob, item.entry):
                _copy_atomically(item.source, blob)
            link = snapshot / item.entry.path
            link.parent.mkdir(parents=True, exist_ok=True)
            _symlink_atomically(os.path.relpath(blob, link.parent), link)
        if revision != commit:
            ref = root / "refs" / revision
            ref.parent.mkdir(parents=True, exist_ok=True)
            _write_atomically(ref, commit.encode())
    except OSError as exc:
        msg = f"cannot release {repo_id}@{commit} into {cache_dir}: {exc.strerror or exc}"
        raise RegistryError(msg) from exc
    return Release(snapshot, removed)


def _remove_strays(snapshot: Path, keep: set[str]) -> tuple[str, ...]:
    """Delete every entry under ``snapshot`` that is neither a kept file nor a folder of one.

    Removed before the scanned files are linked, so no moment exists in which the snapshot
    holds both the scanned files and an unscanned one under a name the loader would read.
    """
    folders = {str(Path(path).parent) for path in keep} - {"."}
    folders |= {str(parent) for f in folders for parent in Path(f).parents} - {"."}
    removed: list[str] = []
    for folder, dirs, names in os.walk(snapshot, topdown=True, followlinks=False):
        base = Path(folder)
        for name in sorted(dirs):
            full = base / name
            rel = full.relative_to(snapshot).as_posix()
            if rel not in folders or full.is_symlink():
                # A linked folder is never ours (we only link files): remove the link itself.
                full.unlink() if full.is_symlink() else shutil.rmtree(full)
                removed.append(rel + "/")
                dirs.remove(name)
        for name in sorted(names):
            full = base / name
            rel = full.relative_to(snapshot).as_posix()
            if rel not in keep:
                full.unlink()
                removed.append(rel)
    return tuple(sorted(removed))


def _holds(blob: Path, entry: TreeEntry) -> bool:
    """True when ``blob`` exists (not as a symlink) and its bytes match ``entry``."""
    if blob.is_symlink() or not blob.is_file() or blob.stat().st_size != entry.size:
        return False
    if entry.lfs_sha256 is None:
        return git_blob_oid(blob) == entry.git_oid
    hasher = hashlib.sha256()
    with blob.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest() == entry.lfs_sha256


def _copy_atomically(source: Path, dest: Path) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=".mamori-", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, source.open("rb") as src:
            shutil.copyfileobj(src, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_atomically(dest: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=".mamori-", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        tmp.chmod(0o644)
        tmp.replace(dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _symlink_atomically(target: str, link: Path) -> None:
    tmp = link.with_name(f".mamori-{secrets.token_hex(6)}-{link.name}")
    tmp.symlink_to(target)
    try:
        tmp.replace(link)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
