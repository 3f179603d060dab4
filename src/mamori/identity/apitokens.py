"""API tokens for CI: random secrets, stored only as SHA-256, scoped, role-bearing, revocable.

A token looks like ``mamori_<43 url-safe base64 characters>`` (256 random bits), so secret
scanners and people recognise it. The store keeps only ``sha256(token)``: a database leak does
not leak usable credentials, and the hash of a 256-bit secret needs no salt or slow KDF (there
is nothing to brute-force). A verified token becomes a :class:`Principal` whose ``scopes``
attribute limits which routes it may call, on top of what the policies allow its roles.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Final

from sqlalchemy import select

from mamori.errors import IdentityError, NotFoundError
from mamori.identity.principal import Principal
from mamori.identity.subjects import check_subject
from mamori.store.db import Store, audit_append
from mamori.store.models import ApiTokenRow
from mamori.text import name_problem

__all__ = [
    "API_TOKEN_ISSUER",
    "TOKEN_PREFIX",
    "ApiTokenInfo",
    "ApiTokens",
    "IssuedToken",
    "Scope",
    "is_api_token",
    "principal_scopes",
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

    @classmethod
    def of(cls, row: ApiTokenRow) -> ApiTokenInfo:
        """Copy a row into a view."""
        return cls(
            id=row.id,
            name=row.name,
            subject=row.subject,
            roles=tuple(row.roles),
            scopes=tuple(Scope(s) for s in row.scopes),
            created_by=row.created_by,
            created_at=_aware(row.created_at),
            expires_at=_aware_opt(row.expires_at),
            revoked_at=_aware_opt(row.revoked_at),
        )


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A newly created token: the only moment the secret is known."""

    secret: str
    info: ApiTokenInfo


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _aware_opt(moment: datetime | None) -> datetime | None:
    return None if moment is None else _aware(moment)


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


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


class ApiTokens:
    """Create, list, revoke and verify API tokens in the verdict store."""

    def __init__(self, store: Store) -> None:
        """Keep tokens in ``store``'s ``api_tokens`` table."""
        self.store = store

    def create(
        self,
        *,
        name: str,
        subject: str,
        roles: Iterable[str],
        scopes: Iterable[Scope],
        created_by: str,
        ttl_seconds: int | None = None,
    ) -> IssuedToken:
        """Create a token and audit its creation; the secret is returned once, never stored."""
        scope_set = sorted({Scope(s) for s in scopes})
        role_list = sorted(set(roles))
        if not name or not subject:
            raise IdentityError("an API token needs a name and a subject")
        check_subject(subject)
        problem = name_problem(name)
        if problem is not None:
            msg = f"API token name {problem}"
            raise IdentityError(msg)
        if not scope_set:
            raise IdentityError("an API token needs at least one scope")
        if ttl_seconds is not None and ttl_seconds <= 0:
            raise IdentityError("an API token's lifetime must be positive")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)
        now = datetime.now(UTC)
        row = ApiTokenRow(
            name=name,
            token_hash=_hash(secret),
            subject=subject,
            roles=role_list,
            scopes=[s.value for s in scope_set],
            created_by=created_by,
            created_at=now,
            expires_at=None if ttl_seconds is None else now + timedelta(seconds=ttl_seconds),
        )
        with self.store.write() as session:
            session.add(row)
            session.flush()
            audit_append(
                session,
                principal=created_by,
                action="token-create",
                resource=f"api-token:{row.id}",
                decision="created",
                reason=f"{name} for {subject}: roles={','.join(role_list)} "
                f"scopes={','.join(s.value for s in scope_set)}",
            )
            info = ApiTokenInfo.of(row)
        return IssuedToken(secret=secret, info=info)

    def list(self) -> list[ApiTokenInfo]:
        """Every token, newest first (revoked and expired ones included, marked as such)."""
        with self.store.read() as session:
            rows = session.execute(select(ApiTokenRow).order_by(ApiTokenRow.id.desc())).scalars()
            return [ApiTokenInfo.of(r) for r in rows]

    def revoke(self, token_id: int, *, by: str) -> ApiTokenInfo:
        """Revoke a token (idempotent) and audit it; unknown ids raise :class:`NotFoundError`."""
        with self.store.write() as session:
            row = session.get(ApiTokenRow, token_id)
            if row is None:
                msg = f"no API token {token_id}"
                raise NotFoundError(msg)
            if row.revoked_at is None:
                row.revoked_at = datetime.now(UTC)
                audit_append(
                    session,
                    principal=by,
                    action="token-revoke",
                    resource=f"api-token:{row.id}",
                    decision="revoked",
                    reason=row.name,
                )
            return ApiTokenInfo.of(row)

    def verify(self, secret: str) -> Principal:
        """The principal a token proves; unknown, malformed, revoked or expired → IdentityError.

        The lookup is by the SHA-256 of the presented secret, so response time depends on the
        hash (which an attacker cannot steer towards a real token), not on how many leading
        characters of a real secret they guessed; the final comparison is constant-time too.
        """
        if not is_api_token(secret) or len(secret) != _TOKEN_LEN:
            raise IdentityError("malformed API token")
        digest = _hash(secret)
        with self.store.read() as session:
            row = session.execute(
                select(ApiTokenRow).where(ApiTokenRow.token_hash == digest)
            ).scalar()
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                raise IdentityError("unknown API token")
            info = ApiTokenInfo.of(row)
        if info.revoked_at is not None:
            raise IdentityError("API token was revoked")
        if info.expires_at is not None and info.expires_at <= datetime.now(UTC):
            raise IdentityError("API token has expired")
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
