"""The verified caller: a :class:`Principal` is only ever built from a verified credential."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

__all__ = ["Principal"]


def _empty_attrs() -> Mapping[str, str]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling, as established by a verified token.

    Attributes:
        subject: the token's ``sub`` claim, unique within ``issuer``.
        issuer: the token's ``iss`` claim.
        tenant: the tenant the subject belongs to (``""`` when the deployment has none).
        roles: the roles granted by the issuer, never by the caller's own text.
        attributes: further string claims the issuer vouches for (e.g. ``patient_id``).
        token_id: the ``jti`` claim, used for revocation; ``""`` when absent.
        expires_at: the ``exp`` claim, seconds since the epoch.
    """

    subject: str
    issuer: str
    tenant: str
    roles: frozenset[str]
    attributes: Mapping[str, str] = field(default_factory=_empty_attrs)
    token_id: str = ""
    expires_at: int = 0

    def cache_key(self) -> tuple[str, str, str, tuple[str, ...], tuple[tuple[str, str], ...]]:
        """Return a hashable key covering every field that can change an authorization."""
        return (
            self.issuer,
            self.subject,
            self.tenant,
            tuple(sorted(self.roles)),
            tuple(sorted(self.attributes.items())),
        )
