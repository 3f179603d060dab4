"""The plugin's before_request hook on a bare Flask app (no MLflow server, no mamori)."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from mamori.lifecycle.mlflow.gate_plugin import GateClient, GateConfig, Verdict, install_gate
from mamori.lifecycle.mlflow.identity import RegistryFacts, VersionIdentity

ALIAS = "/api/2.0/mlflow/registered-models/alias"
AJAX_ALIAS = "/ajax-api/2.0/mlflow/registered-models/alias"
STAGE = "/api/2.0/mlflow/model-versions/transition-stage"


class _Recording(GateClient):
    def __init__(self, allowed: bool) -> None:
        super().__init__(GateConfig("http://unused", "t", 1.0, ("production", "champion")))
        self.allowed = allowed
        self.asked: list[tuple[str, str, str, str]] = []

    def ask(self, *, name: str, version: str, target: str, actor: str, current=None) -> Verdict:
        self.asked.append((name, version, target, actor))
        self.current = current
        return Verdict(allowed=self.allowed, reason="stub")


FACTS = RegistryFacts(VersionIdentity(1, "run", "models:/m-1", "m-1"), "0" * 64)


def _app(client: GateClient, facts=lambda _n, _v: FACTS) -> Flask:
    app = Flask("t")
    for rule in (ALIAS, AJAX_ALIAS, STAGE):
        app.add_url_rule(rule, rule, lambda: "written", methods=["POST", "GET"])
    install_gate(app, client, facts)
    return app


@pytest.fixture
def unreachable() -> Flask:
    # Port 1 on loopback refuses connections: mamori is "down".
    return _app(GateClient(GateConfig("http://127.0.0.1:1", "t", 0.5, ("production",))))


def test_a_protected_alias_is_refused_when_mamori_is_unreachable(unreachable):
    body = {"name": "m", "alias": "production", "version": "1"}
    response = unreachable.test_client().post(ALIAS, json=body)
    assert response.status_code == 403
    assert "unreachable" in response.get_json()["message"]


def test_an_unprotected_alias_never_asks_mamori(unreachable):
    body = {"name": "m", "alias": "staging", "version": "1"}
    assert unreachable.test_client().post(ALIAS, json=body).status_code == 200


def test_a_double_encoded_json_body_is_read_like_mlflows_handler_reads_it(unreachable):
    # MLflow decodes a JSON string body a second time for legacy clients
    # (handlers._get_normalized_request_json); a hook parsing the body its own way would see
    # a string, no alias, and let the write through.
    body = json.dumps(json.dumps({"name": "m", "alias": "production", "version": "1"}))
    response = unreachable.test_client().post(ALIAS, data=body, content_type="application/json")
    assert response.status_code == 403


def test_the_camel_case_spelling_of_a_field_is_read_like_the_handler_reads_it():
    client = _Recording(allowed=False)
    body = {"name": "m", "version": "1", "stage": "Production", "archiveExistingVersions": True}
    assert _app(client).test_client().post(STAGE, json=body).status_code == 403


def test_reads_are_not_gated(unreachable):
    assert unreachable.test_client().get(ALIAS).status_code == 200


@pytest.mark.parametrize("stage", ["Production", "production", "PRODUCTION"])
def test_a_transition_to_production_is_gated_in_any_case(unreachable, stage):
    body = {"name": "m", "version": "1", "stage": stage, "archive_existing_versions": False}
    assert unreachable.test_client().post(STAGE, json=body).status_code == 403


def test_a_transition_to_staging_is_not_gated(unreachable):
    body = {"name": "m", "version": "1", "stage": "Staging", "archive_existing_versions": False}
    assert unreachable.test_client().post(STAGE, json=body).status_code == 200


def test_the_ajax_api_is_gated_like_the_rest_api():
    client = _Recording(allowed=False)
    body = {"name": "m", "alias": "Champion", "version": "7"}
    response = _app(client).test_client().post(AJAX_ALIAS, json=body)
    assert response.status_code == 403
    assert client.asked == [("m", "7", "Champion", "")]


def test_an_allowed_promotion_reaches_the_handler():
    client = _Recording(allowed=True)
    body = {"name": "m", "alias": "production", "version": "7"}
    response = _app(client).test_client().post(ALIAS, json=body)
    assert response.status_code == 200
    assert response.data == b"written"


def test_the_plugin_refuses_to_start_without_a_gate_url(monkeypatch):
    from mamori.errors import ConfigError

    monkeypatch.delenv("MAMORI_GATE_URL", raising=False)
    with pytest.raises(ConfigError):
        GateConfig.from_settings()


def test_the_registry_facts_read_in_the_server_are_sent_with_the_question():
    client = _Recording(allowed=True)
    body = {"name": "m", "alias": "production", "version": "7"}
    assert _app(client).test_client().post(ALIAS, json=body).status_code == 200
    assert client.current == FACTS


def test_facts_that_cannot_be_read_are_a_deny_without_asking_mamori():
    client = _Recording(allowed=True)
    body = {"name": "m", "alias": "production", "version": "7"}
    app = _app(client, facts=lambda _n, _v: "cannot read the version")
    response = app.test_client().post(ALIAS, json=body)
    assert response.status_code == 403
    assert "cannot read the version" in response.get_json()["message"]
    assert client.asked == []
