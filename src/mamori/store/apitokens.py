"""The API tokens the service accepts, kept in the verdict store (only their SHA-256).

What a token is (format, hash, scopes, the principal it proves) lives in
:mod:`mamori.identity.apitokens`; this module creates, lists, revokes and verifies them, and
audits each change in the same transaction.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from mamori.errors import IdentityError, NotFoundError
from mamori.identity.apitokens import (
    ApiTokenInfo,
    IssuedToken,
    Scope,
    aware,
    aware_opt,
    has_token_shape,
    hash_secret,
    new_secret,
    token_principal,
)
from mamori.identity.principal import Principal
from mamori.identity.subjects import check_subject
from mamori.store.db import Store, audit_append
from mamori.store.models import ApiTokenRow
from mamori.text import name_problem

__all__ = ["ApiTokens"]


def _info(row: ApiTokenRow) -> ApiTokenInfo:
    """Copy a row into a view."""
    return ApiTokenInfo(
        id=row.id,
        name=row.name,
        subject=row.subject,
        roles=tuple(row.roles),
        scopes=tuple(Scope(s) for s in row.scopes),
        created_by=row.created_by,
        created_at=aware(row.created_at),
        expires_at=aware_opt(row.expires_at),
        revoked_at=aware_opt(row.revoked_at),
    )


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
        secret = new_secret()
        now = datetime.now(UTC)
        row = ApiTokenRow(
            name=name,
            token_hash=hash_secret(secret),
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
            info = _info(row)
        return IssuedToken(secret=secret, info=info)

    def list(self) -> list[ApiTokenInfo]:
        """Every token, newest first (revoked and expired ones included, marked as such)."""
        with self.store.read() as session:
            rows = session.execute(select(ApiTokenRow).order_by(ApiTokenRow.id.desc())).scalars()
            return [_info(r) for r in rows]

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
            return _info(row)

    def verify(self, secret: str) -> Principal:
        """The principal a token proves; unknown, malformed, revoked or expired → IdentityError.

        The lookup is by the SHA-256 of the presented secret, so response time depends on the
        hash (which an attacker cannot steer towards a real token), not on how many leading
        characters of a real secret they guessed; the final comparison is constant-time too.
        """
        if not has_token_shape(secret):
            raise IdentityError("malformed API token")
        digest = hash_secret(secret)
        with self.store.read() as session:
            row = session.execute(
                select(ApiTokenRow).where(ApiTokenRow.token_hash == digest)
            ).scalar()
            if row is None or not hmac.compare_digest(row.token_hash, digest):
                raise IdentityError("unknown API token")
            info = _info(row)
        if info.revoked_at is not None:
            raise IdentityError("API token was revoked")
        if info.expires_at is not None and info.expires_at <= datetime.now(UTC):
            raise IdentityError("API token has expired")
        return token_principal(info)
