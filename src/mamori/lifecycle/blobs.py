"""Content-addressed quarantine for imported artifacts.

An import is copied once into ``<root>/<sha256[:2]>/<sha256>`` while it is hashed, then made
read-only. Workers scan that copy, so the bytes that were scanned are the bytes that were
hashed, whatever happens to the original upload afterwards.

The copy is written to ``<root>/.incoming-*`` first. Its writer holds an exclusive ``flock``
on it until it is renamed into place or deleted; a writer killed with ``kill -9`` loses the
lock with its process, which is how :meth:`BlobStore.remove_orphans` tells a crashed upload's
leftover (deleted) from one still being written (kept), across processes.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from mamori.errors import ScanError

__all__ = ["BlobStore", "StoredBlob"]

_CHUNK: Final = 1 << 20
_HEX: Final = frozenset("0123456789abcdef")
_SHA256_HEX_LEN: Final = 64
_INCOMING: Final = ".incoming-"
#: A temp file younger than this is never swept: its writer may not have locked it yet.
_ORPHAN_MIN_AGE: Final = 60.0


@dataclass(frozen=True, slots=True)
class StoredBlob:
    """A blob in the store: its digest, size and path."""

    sha256: str
    size: int
    path: Path


class BlobStore:
    """Write-once blobs named by their SHA-256."""

    def __init__(self, root: Path) -> None:
        """Use (and create) ``root`` as the quarantine directory."""
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def path_for(self, sha256: str) -> Path:
        """Where the blob with this digest lives (whether or not it exists)."""
        if len(sha256) != _SHA256_HEX_LEN or not _HEX.issuperset(sha256):
            msg = f"not a sha256 digest: {sha256[:80]!r}"
            raise ScanError(msg)
        return self.root / sha256[:2] / sha256

    def put_stream(self, stream: IO[bytes], *, max_bytes: int | None = None) -> StoredBlob:
        """Copy ``stream`` into the store while hashing it; return the stored blob.

        The copy goes to a temporary file in the same directory and is renamed into place only
        when complete, so a crash never leaves a half-written blob under a digest name.
        """
        hasher = hashlib.sha256()
        size = 0
        fd, tmp_name = tempfile.mkstemp(prefix=_INCOMING, dir=self.root)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                # Held until the rename below: remove_orphans() never takes a live upload.
                fcntl.flock(out.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                while chunk := stream.read(_CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        _too_large(max_bytes)
                    hasher.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
                digest = hasher.hexdigest()
                final = self.path_for(digest)
                final.parent.mkdir(exist_ok=True)
                if final.exists():
                    tmp.unlink()
                else:
                    tmp.chmod(0o444)
                    tmp.replace(final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return StoredBlob(sha256=digest, size=size, path=final)

    def remove_orphans(self, *, min_age: float = _ORPHAN_MIN_AGE) -> int:
        """Delete ``.incoming-*`` files no live writer holds; return how many were removed.

        Called when a process that writes blobs starts. A file younger than ``min_age``
        seconds is left alone (its writer may be between creating and locking it).
        """
        removed = 0
        now = time.time()
        for path in self.root.glob(f"{_INCOMING}*"):
            try:
                fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            except OSError:
                continue  # gone already, or not a regular file we created
            try:
                if now - os.fstat(fd).st_mtime < min_age:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live upload
                path.unlink(missing_ok=True)
                removed += 1
            finally:
                os.close(fd)
        return removed

    def put_file(self, path: Path) -> StoredBlob:
        """Copy a local file into the store."""
        try:
            with path.open("rb") as fh:
                return self.put_stream(fh)
        except OSError as exc:
            msg = f"cannot read {os.fspath(path)!r}: {exc.strerror or exc}"
            raise ScanError(msg) from exc

    def get(self, sha256: str) -> StoredBlob | None:
        """The stored blob with this digest, or ``None``."""
        path = self.path_for(sha256)
        try:
            size = path.stat().st_size
        except FileNotFoundError:
            return None
        return StoredBlob(sha256=sha256, size=size, path=path)


def _too_large(max_bytes: int) -> None:
    msg = f"upload exceeds the {max_bytes}-byte limit"
    raise ScanError(msg)
