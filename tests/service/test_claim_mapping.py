"""The service maps IdP claims through ``[identity]``; unmapped role names grant nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from mamori.config import load_settings
from mamori.errors import ConfigError
from mamori.service import ScanMode, create_app
from mamori.service.runtime import dev_issuer

from .conftest import LOOPBACK, bearer


def _client(tmp_path: Path, database_url: str, **identity: object):
    settings = load_settings(
        data_dir=tmp_path / "data", database_url=database_url, identity=identity
    )
    return settings, TestClient(create_app(settings, scan_mode=ScanMode.INLINE), client=LOOPBACK)


def test_by_default_only_lifecycle_role_names_grant_roles(client, mint):
    # "root" is no mamori role: a token claiming it may not import.
    r = client.post(
        "/v1/artifacts", params={"name": "m"}, content=b"x", headers=bearer(mint("eve", "root"))
    )
    assert r.status_code == 403


def test_configured_groups_grant_their_mapped_roles_and_nothing_else(tmp_path, database_url):
    settings, client = _client(
        tmp_path, database_url, roles={"groups": {"ml-importers": ["importer"]}}
    )
    issuer = dev_issuer(settings)
    with client:
        mapped = issuer.mint("ivan", claims={"groups": ["ml-importers"]})
        r = client.post("/v1/artifacts", params={"name": "m"}, content=b"x", headers=bearer(mapped))
        assert r.status_code == 201, r.text
        # The token's own "roles" claim is no longer read at all once groups are mapped.
        unmapped = issuer.mint("eve", roles=["importer", "admin"])
        r = client.post(
            "/v1/artifacts", params={"name": "m"}, content=b"x", headers=bearer(unmapped)
        )
        assert r.status_code == 403


def test_identity_settings_are_read_from_mamori_toml(tmp_path, monkeypatch, database_url):
    (tmp_path / "mamori.toml").write_text(
        '[identity.roles.groups]\n"ml-admins" = ["admin"]\n'
        '[identity.attributes]\ndept = "department"\n'
        '[identity]\ncase_sensitive_issuers = ["https://okta"]\n',
        encoding="utf-8",
    )
    monkeypatch.chdir(tmp_path)
    settings = load_settings(database_url=database_url)
    assert settings.identity.roles == {"groups": {"ml-admins": ("admin",)}}
    assert settings.identity.attributes == {"dept": "department"}
    assert settings.identity.case_sensitive_issuers == ("https://okta",)


def test_a_bad_identity_mapping_is_a_configuration_error(tmp_path, database_url):
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        identity={"roles": {"groups": {"g": ["not a role"]}}},
    )
    with pytest.raises(ConfigError, match=r"\[identity\]"):
        create_app(settings, scan_mode=ScanMode.INLINE)
