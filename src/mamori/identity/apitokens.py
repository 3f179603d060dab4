"""API tokens for CI: random secrets, stored only as SHA-256, scoped, role-bearing, revocable.

A token looks like ``mamori_<43 url-safe base64 characters>`` (256 random bits), so secret
scanners and people recognise it. The store keeps only ``sha256(token)``: a database leak does
not leak usable credentials, and the hash of a 256-bit secret needs no salt or slow KDF (there
is nothing to brute-force). A verified token becomes a :class:`Principal` whose ``scopes``
attribute limits which routes it may call, on top of what the policies allow its roles.

This module is the token itself (format, hash, scopes, the principal it proves); keeping the
tokens is the store's job (:mod:`mamori.store.apitokens`), so identity imports no store.
"""

from __future__ import annotations

import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Final

from mamori.identity.principal import Principal

__all__ = [
    "API_TOKEN_ISSUER",
    "TOKEN_PREFIX",
    "ApiTokenInfo",
    "IssuedToken",
    "Scope",
    "aware",
    "aware_opt",
    "has_token_shape",
    "hash_secret",
    "is_api_token",
    "new_secret",
    "principal_scopes",
    "token_principal",
]

TOKEN_PREFIX: Final = "mamori_"  # noqa: S105 - a public prefix, not a secret
"""Every API token starts with this, so it is told apart from a JWT without parsing it."""

API_TOKEN_ISSUER: Final = "mamori|api-token"  # noqa: S105 - an issuer name, not a secret
"""The ``issuer`` of principals proven by an API token (JWT principals carry their ``iss``)."""

_SECRET_BYTES: Final = 32  # 256 bits
_TOKEN_LEN: Final = len(TOKEN_PREFIX) + 43  # token_urlsafe(32) is 43 characters
_SCOPES_ATTR: Final = "scopes"


class Scope(enum.StrEnum):
    """What an API token may be used for, independent of the roles it carries."""

    READ = "read"
    """List and view artifacts, reports and findings."""
    SCAN = "scan"
    """Upload artifacts for scanning."""
    GATE = "gate"
    """Ask the deployment gate about a digest."""
    DECIDE = "decide"
    """Approve, reject or override (the policies still require roles and MFA)."""
    ADMIN = "admin"
    """Token management, audit export, registering server-side paths."""
    AUTHZ = "authz"
    """Ask the AuthZEN decision API about a forwarded end user (a PEP's credential)."""


@dataclass(frozen=True, slots=True)
class ApiTokenInfo:
    """A stored token's metadata; never the secret."""

    id: int
    name: str
    subject: str
    roles: tuple[str, ...]
    scopes: tuple[Scope, ...]
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A newly created token: the only moment the secret is known."""

    secret: str
    info: ApiTokenInfo


def aware(moment: datetime) -> datetime:
    """``moment`` with its time zone (UTC where a database dropped it)."""
    # SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def aware_opt(moment: datetime | None) -> datetime | None:
    """:func:`aware` that lets ``None`` through."""
    return None if moment is None else aware(moment)


def hash_secret(secret: str) -> str:
    """What the store keeps of a token: its SHA-256."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def new_secret() -> str:
    """A fresh token: the prefix and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def has_token_shape(credential: str) -> bool:
    """True when ``credential`` is exactly as long as a token and has its prefix."""
    return is_api_token(credential) and len(credential) == _TOKEN_LEN


def token_principal(info: ApiTokenInfo) -> Principal:
    """The principal a verified token proves."""
    return Principal(
        subject=info.subject,
        issuer=API_TOKEN_ISSUER,
        tenant="",
        roles=frozenset(info.roles),
        # An API token is a single factor by construction: it never satisfies MFA.
        attributes=MappingProxyType(
            {"mfa": "false", _SCOPES_ATTR: " ".join(s.value for s in info.scopes)}
        ),
        token_id=f"api-token:{info.id}",
        expires_at=0 if info.expires_at is None else int(info.expires_at.timestamp()),
    )


def is_api_token(credential: str) -> bool:
    """True when ``credential`` has the shape of a mamori API token (not that it is valid)."""
    return credential.startswith(TOKEN_PREFIX)


def principal_scopes(principal: Principal) -> frozenset[Scope] | None:
    """The scopes an API-token principal is limited to; ``None`` for unscoped (JWT) callers."""
    if principal.issuer != API_TOKEN_ISSUER:
        return None
    raw = principal.attributes.get(_SCOPES_ATTR, "")
    known = {s.value for s in Scope}
    return frozenset(Scope(s) for s in raw.split() if s in known)
