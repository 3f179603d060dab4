"""API tokens: random, stored only as a hash, scoped, revocable, expiring; failures are 401s."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select, update

from mamori.errors import IdentityError, NotFoundError
from mamori.identity.apitokens import (
    API_TOKEN_ISSUER,
    TOKEN_PREFIX,
    Scope,
    is_api_token,
    principal_scopes,
)
from mamori.identity.principal import Principal
from mamori.store import Store, audit_records
from mamori.store.apitokens import ApiTokens
from mamori.store.models import ApiTokenRow


@pytest.fixture
def tokens(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'mamori.db'}")
    store.migrate()
    yield ApiTokens(store)
    store.dispose()


def _create(tokens: ApiTokens, **kwargs):
    args = {
        "name": "ci",
        "subject": "ci:deploy",
        "roles": ["deployer"],
        "scopes": [Scope.GATE],
        "created_by": "admin",
    }
    args.update(kwargs)
    return tokens.create(**args)


def test_a_token_has_the_mamori_prefix_and_256_random_bits(tokens):
    issued = _create(tokens)
    assert issued.secret.startswith(TOKEN_PREFIX)
    assert len(issued.secret) == len(TOKEN_PREFIX) + 43
    assert is_api_token(issued.secret)
    assert issued.secret != _create(tokens).secret


def test_only_the_sha256_of_a_token_is_stored(tokens):
    issued = _create(tokens)
    with tokens.store.read() as session:
        row = session.execute(select(ApiTokenRow)).scalars().first()
    assert row.token_hash == hashlib.sha256(issued.secret.encode()).hexdigest()
    assert issued.secret not in repr(row.__dict__)


def test_a_valid_token_yields_a_principal_with_its_roles_and_scopes(tokens):
    issued = _create(tokens, scopes=[Scope.GATE, Scope.READ])
    principal = tokens.verify(issued.secret)
    assert principal.subject == "ci:deploy"
    assert principal.issuer == API_TOKEN_ISSUER
    assert principal.roles == {"deployer"}
    assert principal_scopes(principal) == {Scope.GATE, Scope.READ}


def test_an_api_token_never_satisfies_mfa(tokens):
    principal = tokens.verify(_create(tokens, roles=["admin"]).secret)
    assert principal.attributes["mfa"] == "false"


def test_a_jwt_principal_is_not_scope_limited():
    p = Principal(subject="a", issuer="https://idp", tenant="", roles=frozenset())
    assert principal_scopes(p) is None


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "mamori_",
        "mamori_short",
        "eyJhbGciOi.x.y",
        TOKEN_PREFIX + "A" * 43,
        TOKEN_PREFIX + "A" * 44,
    ],
)
def test_an_unknown_or_malformed_token_is_refused(tokens, secret):
    _create(tokens)
    with pytest.raises(IdentityError):
        tokens.verify(secret)


def test_a_revoked_token_is_refused(tokens):
    issued = _create(tokens)
    tokens.revoke(issued.info.id, by="admin")
    with pytest.raises(IdentityError, match="revoked"):
        tokens.verify(issued.secret)


def test_revoking_twice_is_harmless_and_audited_once(tokens):
    issued = _create(tokens)
    tokens.revoke(issued.info.id, by="admin")
    tokens.revoke(issued.info.id, by="admin")
    with tokens.store.read() as session:
        actions = [r.action for r in audit_records(session)]
    assert actions == ["token-create", "token-revoke"]


def test_revoking_an_unknown_token_is_not_found(tokens):
    with pytest.raises(NotFoundError):
        tokens.revoke(999, by="admin")


def test_an_expired_token_is_refused(tokens):
    issued = _create(tokens, ttl_seconds=3600)
    tokens.verify(issued.secret)
    with tokens.store.write() as session:
        session.execute(
            update(ApiTokenRow).values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    with pytest.raises(IdentityError, match="expired"):
        tokens.verify(issued.secret)


@pytest.mark.parametrize(
    "kwargs",
    [{"scopes": []}, {"name": ""}, {"subject": ""}, {"ttl_seconds": 0}],
)
def test_a_token_needs_a_name_subject_scope_and_positive_lifetime(tokens, kwargs):
    with pytest.raises(IdentityError):
        _create(tokens, **kwargs)


def test_listing_shows_metadata_newest_first(tokens):
    _create(tokens, name="one")
    _create(tokens, name="two")
    assert [t.name for t in tokens.list()] == ["two", "one"]
