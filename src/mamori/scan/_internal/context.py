"""The contract between the engine and a format handler: what a handler may look at and ask.

:class:`ScanContext` is the engine's side (findings, members, limits), :class:`Probe` what
detection sees. It lives here, below both ``formats/`` and the plumbing they share, so that
neither imports the other's package; ``formats/interface.py`` re-exports it beside
:class:`~mamori.scan.formats.interface.FormatHandler`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from mamori.findings import FileFormat, Finding, Location, Severity
from mamori.scan._internal.source import Source

if TYPE_CHECKING:
    # Types only: the policy (and the signature scanners it configures) sit above this module.
    from mamori.scan.limits import ScanLimits
    from mamori.scan.policy import ScanPolicy

__all__ = ["PROBE_BYTES", "LimitExceeded", "Probe", "ScanContext"]

PROBE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class Probe:
    """What detection may look at: the first and last bytes, the size and the name.

    ``name`` is only a hint (for the extension-mismatch finding); detection must not depend
    on it. ``tail`` is ``None`` for one-shot streams whose end is not known yet.
    """

    head: bytes
    tail: bytes | None
    size: int | None
    name: str


class LimitExceeded(Exception):  # noqa: N818 - control flow, not an error reported to users
    """Raised inside a handler when a limit is hit; the engine turns it into a finding."""

    def __init__(self, rule_id: str, message: str) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.message = message


class ScanContext(Protocol):
    """The engine's services to a handler while it scans one source."""

    @property
    def limits(self) -> ScanLimits:
        """The limits in force."""

    @property
    def policy(self) -> ScanPolicy:
        """The policy in force (allowed/denied globals, threshold)."""

    @property
    def member_path(self) -> tuple[str, ...]:
        """The chain of member names from the scanned file down to this source."""

    def location(self, offset: int | None = None) -> Location:
        """A location in the current source, optionally at a byte offset."""

    def emit(self, finding: Finding) -> None:
        """Record a finding."""

    def report(
        self,
        rule_id: str,
        message: str,
        *,
        offset: int | None = None,
        evidence: str | None = None,
        severity: Severity | None = None,
    ) -> None:
        """Record a finding of catalogue rule ``rule_id`` at ``offset`` in the current source."""

    def refine_format(self, fmt: FileFormat) -> None:
        """Declare a more specific format once the handler knows it (zip -> torch-zip)."""

    def scan_child(
        self,
        name: str,
        source: Source,
        *,
        opaque: bool = False,
        expected_crc32: int | None = None,
        expected_format: FileFormat | None = None,
    ) -> FileFormat:
        """Hash and scan a member by its content; return the format it was detected as.

        ``opaque`` members (raw tensor storage) are hashed and recorded but not parsed.
        ``expected_crc32`` is verified while hashing; a mismatch is a finding.
        ``expected_format`` is what the container says the member is; when content detection
        disagrees, that is a finding, and the member is scanned as what its bytes are.
        """

    def check_deadline(self) -> None:
        """Raise :class:`LimitExceeded` when the wall-clock budget is spent."""

    def account_decompressed(self, nbytes: int) -> None:
        """Count ``nbytes`` of decompressed output; raise :class:`LimitExceeded` past the cap."""
