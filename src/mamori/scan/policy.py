"""What a user may tune about a scan: threshold, extra allowed/denied globals, suppressions.

The in-memory model is a frozen dataclass. Loading it from TOML (``load_policy``) validates the
file with pydantic at the boundary and names the offending key on error.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field

from mamori.findings import Finding, Severity
from mamori.scan.limits import ScanLimits
from mamori.scan.signatures import SignatureConfig

__all__ = ["ScanPolicy", "Suppression"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Suppression:
    """Silences one rule for paths matching a glob. A reason is mandatory and is reported."""

    rule_id: str
    path_glob: str
    reason: str

    def __post_init__(self) -> None:
        """A suppression without a reason is refused: every silenced finding must say why."""
        if not self.reason.strip():
            msg = f"suppression of {self.rule_id} for {self.path_glob!r} needs a reason"
            raise ValueError(msg)

    def matches(self, finding: Finding, path: str) -> bool:
        """True when this suppression covers ``finding`` found in the file ``path``.

        The glob is matched against the scanned path and against ``path!member!...``.
        """
        if finding.rule_id != self.rule_id:
            return False
        full = "!".join((path, *finding.location.member))
        return fnmatch.fnmatchcase(path, self.path_glob) or fnmatch.fnmatchcase(
            full, self.path_glob
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ScanPolicy:
    """Settings for a scan. The defaults are the recommended, fail-closed configuration."""

    threshold: Severity = Severity.MEDIUM
    """Findings at or above this severity make the verdict UNSAFE."""
    allowed_globals: frozenset[str] = frozenset()
    """Extra ``module.qualname`` globals to treat as safe, on top of the built-in allowlist."""
    denied_globals: frozenset[str] = frozenset()
    """Extra ``module.qualname`` globals (or ``module.*``) to treat as dangerous."""
    suppressions: tuple[Suppression, ...] = ()
    limits: ScanLimits = field(default_factory=ScanLimits)
    signatures: SignatureConfig = field(default_factory=SignatureConfig)
    """Optional ClamAV/YARA engines run over every file and member; all off by default."""
    md5: bool = False
    """Also compute MD5 digests. Off by default: it costs 2.4x SHA-256 and binds nothing."""
