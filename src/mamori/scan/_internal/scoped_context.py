"""A scan context scoped to a member analysed in place, or filtered for one format.

Format handlers sometimes analyse a member themselves instead of handing it to the engine (the
torch handlers read ``data.pkl`` with persistent ids and a TorchScript-aware allowlist), or
know that one generic finding does not apply to their format (joblib's inline array data ends
a pickle FRAME early). :class:`MemberContext` wraps the engine's context for that: findings
are placed in the member, extra globals can be allowed, and chosen findings dropped. Every
such use states its reason where it is constructed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

from mamori.findings import FileFormat, Finding, Location, Severity
from mamori.scan._internal.context import ScanContext
from mamori.scan._internal.source import Source
from mamori.scan.rules import rule

if TYPE_CHECKING:
    # Types only: the policy module (and the signature scanners it configures) sit above.
    from mamori.scan.limits import ScanLimits
    from mamori.scan.policy import ScanPolicy

__all__ = ["MemberContext"]


class MemberContext:
    """A :class:`ScanContext` that places findings in a member of the current source.

    The torch handlers analyse ``data.pkl`` themselves (they need its persistent ids and a
    TorchScript-aware allowlist) while the engine records the member as opaque; this adapter
    makes the analyser's findings point at ``<archive>!<member>`` all the same.
    """

    def __init__(
        self,
        parent: ScanContext,
        name: str | None,
        *,
        extra_allowed: frozenset[str] = frozenset(),
        extra_denied: frozenset[str] = frozenset(),
        drop: Callable[[Finding], bool] | None = None,
    ) -> None:
        """Scope ``parent`` to member ``name`` (``None``: the parent's own source).

        ``extra_allowed`` globals are treated as safe; ``extra_denied`` ones are reported
        whatever else allows them (a handler watching for one global); findings for which
        ``drop`` returns True are discarded (a format that knows a generic finding does not
        apply to it).
        """
        self._parent = parent
        self._path = parent.member_path if name is None else (*parent.member_path, name)
        self._drop = drop
        policy = parent.policy
        if extra_allowed:
            policy = dataclasses.replace(
                policy, allowed_globals=policy.allowed_globals | extra_allowed
            )
        if extra_denied:
            policy = dataclasses.replace(
                policy, denied_globals=policy.denied_globals | extra_denied
            )
        self._policy = policy

    @property
    def limits(self) -> ScanLimits:
        """The parent's limits."""
        return self._parent.limits

    @property
    def policy(self) -> ScanPolicy:
        """The parent's policy, plus any extra allowed globals."""
        return self._policy

    @property
    def member_path(self) -> tuple[str, ...]:
        """The member's path."""
        return self._path

    def location(self, offset: int | None = None) -> Location:
        """A location inside the member."""
        return Location(self._path, offset)

    def emit(self, finding: Finding) -> None:
        """Record a finding through the parent, unless ``drop`` discards it."""
        if self._drop is None or not self._drop(finding):
            self._parent.emit(finding)

    def report(
        self,
        rule_id: str,
        message: str,
        *,
        offset: int | None = None,
        evidence: str | None = None,
        severity: Severity | None = None,
    ) -> None:
        """Record a catalogue finding located in the member."""
        self.emit(
            rule(rule_id).finding(
                message, location=self.location(offset), evidence=evidence, severity=severity
            )
        )

    def refine_format(self, fmt: FileFormat) -> None:
        """Members analysed in place have no format of their own to refine; ignored."""

    def scan_child(
        self,
        name: str,
        source: Source,
        *,
        opaque: bool = False,
        expected_crc32: int | None = None,
        expected_format: FileFormat | None = None,
    ) -> FileFormat:
        """Scan a nested source as a child of the parent, named below this member."""
        if self._path == self._parent.member_path:
            return self._parent.scan_child(
                name,
                source,
                opaque=opaque,
                expected_crc32=expected_crc32,
                expected_format=expected_format,
            )
        return self._parent.scan_child(
            f"{self._path[-1]}/{name}",
            source,
            opaque=opaque,
            expected_crc32=expected_crc32,
            expected_format=expected_format,
        )

    def check_deadline(self) -> None:
        """Delegate to the parent."""
        self._parent.check_deadline()

    def account_decompressed(self, nbytes: int) -> None:
        """Delegate to the parent."""
        self._parent.account_decompressed(nbytes)
