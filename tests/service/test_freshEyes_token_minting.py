"""Fresh-eyes red team: an API token that mints API tokens.

An admin-scoped API token given to automation for an hour used to be able to mint a token
with no expiry, more scopes and more roles: revoking or outliving the first token left the
attacker who stole it with a permanent one.
"""

# ruff: noqa: N802 -- this red-team round's naming scheme: test_freshEyes_<technique>
from __future__ import annotations

import pytest

from .conftest import bearer

SHA = "0" * 64


@pytest.fixture
def short_admin_token(client, mint) -> dict:
    r = client.post(
        "/v1/admin/tokens",
        json={"name": "ops", "roles": ["admin"], "scopes": ["admin"], "ttl_seconds": 3600},
        headers=bearer(mint("root", "admin")),
    )
    assert r.status_code == 201, r.text
    return r.json()


def _mint_with(client, token: str, **body) -> int:
    body = {"name": "child", **body}
    return client.post("/v1/admin/tokens", json=body, headers=bearer(token)).status_code


def test_freshEyes_token_minting_a_token_cannot_mint_one_that_outlives_it(
    client, short_admin_token
):
    token = short_admin_token["token"]
    assert _mint_with(client, token, roles=["admin"], scopes=["admin"]) == 403
    assert _mint_with(client, token, roles=["admin"], scopes=["admin"], ttl_seconds=10**6) == 403


def test_freshEyes_token_minting_a_token_cannot_grant_scopes_or_roles_it_lacks(
    client, short_admin_token
):
    token = short_admin_token["token"]
    assert _mint_with(client, token, roles=["deployer"], scopes=["admin"], ttl_seconds=60) == 403
    assert _mint_with(client, token, roles=["admin"], scopes=["gate"], ttl_seconds=60) == 403


def test_freshEyes_token_minting_a_narrower_shorter_child_is_still_allowed(
    client, short_admin_token
):
    token = short_admin_token["token"]
    assert _mint_with(client, token, roles=["admin"], scopes=["admin"], ttl_seconds=60) == 201
