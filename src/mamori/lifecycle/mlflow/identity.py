"""What a registry binding is bound to: an object that cannot be reassigned, and its bytes.

A registered model's name and a version number can be reassigned by anyone with EDIT rights:
rename ``A`` away and another model to ``A``, or delete ``R`` and register again (version 1
again). So mamori binds a version by the fields MLflow never changes after creation
(:class:`VersionIdentity`: creation timestamp, run id, ``source`` and, in MLflow 3, the
logged model id) and by the manifest of its files (path, size, SHA-256 of each).

The gate compares both with what the registry holds *now*. The identity comes from the model
version itself. The bytes cannot be hashed on every promotion, so the gate compares the
artifact store's *listing* (path and size of each file; MLflow's ``FileInfo`` carries no
checksum or ETag) with the manifest; the sweep re-hashes the versions that hold a protected
alias or stage, which also catches a same-size replacement.

This module imports nothing from MLflow at import time: the ``mamori-gate`` plugin, the sweep
and ``mamori verify`` share it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol, Self

__all__ = [
    "UNKNOWN_SIZE",
    "Listing",
    "ManifestEntry",
    "RegistryFacts",
    "VersionIdentity",
    "listing_difference",
    "listing_digest",
    "manifest_difference",
]

_SHOWN: Final = 5
"""Differences named in one reason (the rest are counted)."""
UNKNOWN_SIZE: Final = -1
"""The size of a listed file whose artifact store reports none."""

Listing = tuple[tuple[str, int], ...]
"""``(path, size)`` of every file under a version's artifact root, sorted by path."""


class _ModelVersionLike(Protocol):
    creation_timestamp: int | None
    run_id: str | None
    source: str | None


@dataclass(frozen=True, slots=True)
class VersionIdentity:
    """The fields of a model version that no API call changes after it is created."""

    created: int
    run_id: str
    source: str
    model_id: str

    @classmethod
    def of(cls, version: _ModelVersionLike) -> VersionIdentity:
        """The identity of an MLflow ``ModelVersion`` (entity or search result)."""
        return cls(
            created=int(version.creation_timestamp or 0),
            run_id=version.run_id or "",
            source=version.source or "",
            model_id=str(getattr(version, "model_id", None) or ""),
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (stored with the binding)."""
        return {
            "created": self.created,
            "run_id": self.run_id,
            "source": self.source,
            "model_id": self.model_id,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> VersionIdentity:
        """The inverse of :meth:`to_json`."""
        return cls(
            created=int(data.get("created", 0)),
            run_id=str(data.get("run_id", "")),
            source=str(data.get("source", "")),
            model_id=str(data.get("model_id", "")),
        )

    def difference(self, now: VersionIdentity) -> str:
        """Why ``now`` is not this object ("" when it is)."""
        changed = [
            f"{field} was {old!r}, is now {new!r}"
            for field, old, new in (
                ("creation time", self.created, now.created),
                ("run id", self.run_id, now.run_id),
                ("source", self.source, now.source),
                ("logged model id", self.model_id, now.model_id),
            )
            if old != new
        ]
        if not changed:
            return ""
        return (
            "the registry now holds a different model version under this name and number "
            f"(renamed, or deleted and re-created): {'; '.join(changed)}"
        )


@dataclass(frozen=True, slots=True)
class ManifestEntry:
    """One bound file: its path under the version's artifact root, size and digest."""

    path: str
    size: int
    sha256: str

    def to_json(self) -> list[Any]:
        """``[path, size, sha256]`` (stored with the binding)."""
        return [self.path, self.size, self.sha256]

    @classmethod
    def from_json(cls, data: Sequence[Any]) -> ManifestEntry:
        """The inverse of :meth:`to_json`."""
        path, size, sha256 = data
        return cls(str(path), int(size), str(sha256))


@dataclass(frozen=True, slots=True)
class RegistryFacts:
    """What the registry holds now for one version, as the gate compares it."""

    identity: VersionIdentity
    listing_digest: str
    listing: Listing | None = None
    """The listing itself when the caller has it (the reason can then name the file)."""

    @classmethod
    def from_listing(cls, identity: VersionIdentity, listing: Iterable[tuple[str, int]]) -> Self:
        """Facts with the listing and its digest."""
        ordered = tuple(sorted(listing))
        return cls(identity, listing_digest(ordered), ordered)


def listing_digest(listing: Iterable[tuple[str, int]]) -> str:
    """SHA-256 over the canonical JSON of the sorted ``(path, size)`` pairs."""
    canonical = json.dumps(sorted([p, s] for p, s in listing), separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def _bound_listing(manifest: Sequence[ManifestEntry], listing: Listing | None) -> Listing:
    # A store that reports no size for a file cannot be compared on size; the path still is,
    # and the periodic re-hash compares the bytes.
    unknown = {p for p, s in listing or () if s == UNKNOWN_SIZE}
    return tuple(sorted((e.path, UNKNOWN_SIZE if e.path in unknown else e.size) for e in manifest))


def listing_difference(manifest: Sequence[ManifestEntry], facts: RegistryFacts) -> str:
    """Why the current listing is not the bound manifest ("" when it matches)."""
    bound = _bound_listing(manifest, facts.listing)
    if facts.listing is not None:
        return _describe(dict(bound), dict(facts.listing))
    if listing_digest(bound) == facts.listing_digest:
        return ""
    return (
        "the artifact listing differs from the bound manifest "
        "(a file was added, removed or changed size)"
    )


def _describe(bound: Mapping[str, int], now: Mapping[str, int]) -> str:
    problems = [f"{p} added" for p in sorted(now.keys() - bound.keys())]
    problems += [f"{p} removed" for p in sorted(bound.keys() - now.keys())]
    problems += [
        f"{p} size {bound[p]} -> {now[p]}"
        for p in sorted(bound.keys() & now.keys())
        if bound[p] != now[p]
    ]
    if not problems:
        return ""
    return f"the artifacts changed since their bytes were bound: {_shown(problems)}"


def manifest_difference(bound: Sequence[ManifestEntry], now: Sequence[ManifestEntry]) -> str:
    """Why the files read now are not the bound ones ("" when path, size and digest match)."""
    old = {e.path: e for e in bound}
    new = {e.path: e for e in now}
    problems = [f"{p} added" for p in sorted(new.keys() - old.keys())]
    problems += [f"{p} removed" for p in sorted(old.keys() - new.keys())]
    problems += [
        f"{p} sha256 {old[p].sha256[:12]} -> {new[p].sha256[:12]}"
        for p in sorted(old.keys() & new.keys())
        if (old[p].sha256, old[p].size) != (new[p].sha256, new[p].size)
    ]
    if not problems:
        return ""
    return f"the bytes differ from the bound manifest: {_shown(problems)}"


def _shown(problems: list[str]) -> str:
    more = len(problems) - _SHOWN
    return ", ".join(problems[:_SHOWN]) + (f" and {more} more" if more > 0 else "")
