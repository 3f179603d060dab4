"""Content-addressed quarantine for imported artifacts.

An import is copied once into ``<root>/<sha256[:2]>/<sha256>`` while it is hashed, then made
read-only. Workers scan that copy, so the bytes that were scanned are the bytes that were
hashed, whatever happens to the original upload afterwards.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Final

from mamori.errors import ScanError

__all__ = ["BlobStore", "StoredBlob"]

_CHUNK: Final = 1 << 20
_HEX: Final = frozenset("0123456789abcdef")
_SHA256_HEX_LEN: Final = 64


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
        fd, tmp_name = tempfile.mkstemp(prefix=".incoming-", dir=self.root)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
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
