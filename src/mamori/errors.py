"""The one exception tree of mamori.

Every error that mamori raises on purpose derives from :class:`MamoriError`::

    MamoriError
    ├── ConfigError        bad configuration or policy file (names the file and the key)
    ├── ScanError          a scan could not be carried out at all (missing path, I/O error)
    ├── IdentityError      a credential could not be verified (token, JWKS, API token)
    ├── PolicyError        the policy engine could not decide; callers treat it as deny
    ├── AccessDeniedError  the policy decided: no (carries the deciding policy ids)
    ├── NotFoundError      no such object (also what a forbidden lookup says)
    ├── InvalidStateError  the lifecycle does not allow this step now
    ├── StoreError         the verdict store failed; nothing half-written is kept
    └── RegistryError      a model registry or hub answered wrongly or not at all

A *finding* about a model is not an error: malformed or hostile model content becomes a
:class:`mamori.findings.Finding`. Errors are for the cases where mamori cannot give an answer,
and callers map them to exit code 2 or an HTTP 4xx/5xx.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "ConfigError",
    "IdentityError",
    "InvalidStateError",
    "MamoriError",
    "NotFoundError",
    "PolicyError",
    "RegistryError",
    "ScanError",
    "StoreError",
]


class MamoriError(Exception):
    """Root of every error mamori raises on purpose."""

    def diagnostics(self) -> str:
        """Return a one-line, human-readable explanation suitable for a CLI or API error body."""
        text = str(self) or type(self).__name__
        cause = self.__cause__
        if cause is not None and str(cause) and str(cause) not in text:
            text = f"{text}: {cause}"
        return " ".join(text.split())


class ConfigError(MamoriError):
    """A configuration or policy file is missing, unreadable or invalid."""


class ScanError(MamoriError):
    """A scan could not be carried out (the path does not exist, cannot be read, ...)."""


class IdentityError(MamoriError):
    """A credential (JWT, API token, JWKS) could not be verified."""


class PolicyError(MamoriError):
    """The policy engine could not reach a decision. Callers must treat this as deny."""


class StoreError(MamoriError):
    """The verdict store failed. The failed write was rolled back."""


class RegistryError(MamoriError):
    """A model registry or hub gave an unexpected answer or none."""


class AccessDeniedError(MamoriError):
    """The policy engine denied the action. ``policy_ids`` name the deciding policies."""

    def __init__(self, message: str, *, policy_ids: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.policy_ids = policy_ids


class NotFoundError(MamoriError):
    """The named object does not exist (or the caller may not know that it does)."""


class InvalidStateError(MamoriError):
    """The lifecycle does not allow this transition from the artifact's current state."""
