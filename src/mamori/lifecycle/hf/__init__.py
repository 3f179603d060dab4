"""Quarantined Hugging Face pulls: list, check, download, verify, scan, then release.

``pull(lifecycle, principal, "org/name", "main", settings=settings)`` is the library API;
``mamori pull`` is a thin command over it.
"""

from __future__ import annotations

from mamori.lifecycle.hf.client import DownloadRefusedError, HubClient
from mamori.lifecycle.hf.policy import (
    ALLOWED_EXTENSIONS,
    ALLOWED_FILENAMES,
    FileKind,
    PullPolicy,
    TreeEntry,
)
from mamori.lifecycle.hf.pull import (
    SOURCE,
    FileStatus,
    PulledFile,
    PullOutcome,
    PullResult,
    pull,
)

__all__ = [
    "ALLOWED_EXTENSIONS",
    "ALLOWED_FILENAMES",
    "SOURCE",
    "DownloadRefusedError",
    "FileKind",
    "FileStatus",
    "HubClient",
    "PullOutcome",
    "PullPolicy",
    "PullResult",
    "PulledFile",
    "TreeEntry",
    "pull",
]
