"""What a user may tune about a scan: threshold, extra allowed/denied globals, suppressions.

The in-memory model is a frozen dataclass. Loading it from TOML (``load_policy``) validates the
file with pydantic at the boundary and names the offending key on error.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
from dataclasses import dataclass, field
from typing import Final

from mamori.findings import Finding, Severity
from mamori.scan.limits import ScanLimits
from mamori.scan.signatures import SignatureConfig

__all__ = ["OVERRIDE_NOTE_PREFIX", "DenylistOverride", "ScanPolicy", "Suppression"]


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

    def matches(self, finding: Finding, path: str, *, directory: bool = False) -> bool:
        """True when this suppression covers ``finding`` found in the file ``path``.

        The glob is matched against the scanned path and against ``path!member!...``. In a
        directory scan the first member is a file of the tree, so it is also matched as
        ``path/file!member!...``: ``models/*.bin`` then matches ``models/a.bin`` whether
        ``models/a.bin`` or ``models/`` was scanned.
        """
        if finding.rule_id != self.rule_id:
            return False
        path = posixpath.normpath(path.replace(os.sep, "/"))
        member = finding.location.member
        candidates = [path, "!".join((path, *member))]
        if directory and member:
            candidates.append("!".join((posixpath.join(path, member[0]), *member[1:])))
        return any(fnmatch.fnmatchcase(c, self.path_glob) for c in candidates)


@dataclass(frozen=True, slots=True, kw_only=True)
class DenylistOverride:
    """Trusts a global that the built-in denylist covers. Needs a reason; every report shows it.

    An allowlist entry must never silently cancel the denylist (``allow = ["posix.system"]``
    would make a ``posix.system`` payload SAFE), so such a name is only accepted through an
    explicit override, which is printed as a note in the text, JSON and SARIF reports.
    """

    name: str
    reason: str

    def __post_init__(self) -> None:
        """An override without a reason is refused."""
        if not self.reason.strip():
            msg = f"denylist override of {self.name!r} needs a reason"
            raise ValueError(msg)

    @property
    def note(self) -> str:
        """The line every report carries for this override."""
        return f"{OVERRIDE_NOTE_PREFIX}{self.name} is trusted by the scan policy: {self.reason}"


OVERRIDE_NOTE_PREFIX: Final = "denylist override: "
"""Reports mark a policy override of the built-in denylist with a note starting so."""


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
    denylist_overrides: tuple[DenylistOverride, ...] = ()
    """Denylisted globals trusted anyway, each with its reason; also in ``allowed_globals``."""

    def __post_init__(self) -> None:
        """Every override must be in the allowlist, or it would be reported but not applied."""
        if missing := sorted({o.name for o in self.denylist_overrides} - self.allowed_globals):
            msg = f"denylist overrides not in allowed_globals: {', '.join(missing)}"
            raise ValueError(msg)

    def override_notes(self) -> tuple[str, ...]:
        """One report note per denylist override, so no report hides that the policy bent."""
        return tuple(o.note for o in self.denylist_overrides)
