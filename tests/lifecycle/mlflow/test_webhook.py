"""Signature, replay window and payload parsing of MLflow webhook deliveries (no server)."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mamori.errors import IdentityError, MamoriError, RegistryError
from mamori.lifecycle.mlflow.gate import is_protected
from mamori.lifecycle.mlflow.webhook import (
    AliasData,
    EventKind,
    ModelVersionData,
    parse_event,
    sign,
    verify_delivery,
)

SECRET = b"s3cret"
NOW = 1_800_000_000
DELIVERY = "0b9f5c1e-6a49-4a3e-9d0e-2f4c1c1d2e3f"


def _headers(body: bytes, *, ts: int = NOW, delivery: str = DELIVERY, secret: bytes = SECRET):
    return {
        "X-MLflow-Delivery-Id": delivery,
        "X-MLflow-Timestamp": str(ts),
        "X-MLflow-Signature": sign(secret, delivery, str(ts), body),
    }


def _body(entity: str = "model_version", action: str = "created", **data) -> bytes:
    payload = {"entity": entity, "action": action, "timestamp": "t", "data": data}
    return json.dumps(payload).encode()


def test_the_signature_matches_mlflows_own_construction():
    from mlflow.webhooks.delivery import _generate_hmac_signature

    body = _body(name="m", version="1", source="models:/m-1")
    expected = _generate_hmac_signature(SECRET.decode(), DELIVERY, str(NOW), body.decode())
    assert sign(SECRET, DELIVERY, str(NOW), body) == expected


def test_a_correctly_signed_delivery_within_the_window_is_accepted():
    body = _body(name="m", version="1")
    delivery = verify_delivery(SECRET, _headers(body), body, now=NOW + 10)
    assert delivery.delivery_id == DELIVERY


def test_a_signature_over_other_bytes_is_rejected():
    body = _body(name="m", version="1")
    headers = _headers(body)
    with pytest.raises(IdentityError, match="does not match"):
        verify_delivery(SECRET, headers, body.replace(b'"1"', b'"2"'), now=NOW)


def test_a_signature_made_with_another_secret_is_rejected():
    body = _body(name="m", version="1")
    with pytest.raises(IdentityError, match="does not match"):
        verify_delivery(SECRET, _headers(body, secret=b"guess"), body, now=NOW)


def test_the_signature_binds_the_delivery_id_so_it_cannot_be_swapped():
    body = _body(name="m", version="1")
    headers = _headers(body) | {"X-MLflow-Delivery-Id": "11111111-2222-3333-4444-555555555555"}
    with pytest.raises(IdentityError):
        verify_delivery(SECRET, headers, body, now=NOW)


@pytest.mark.parametrize("skew", [-301, 301, 10_000])
def test_a_timestamp_outside_the_five_minute_window_is_rejected(skew):
    body = _body(name="m", version="1")
    with pytest.raises(IdentityError, match="replay window"):
        verify_delivery(SECRET, _headers(body), body, now=NOW + skew)


def test_an_unsigned_delivery_is_rejected():
    body = _body(name="m", version="1")
    headers = _headers(body)
    del headers["X-MLflow-Signature"]
    with pytest.raises(IdentityError):
        verify_delivery(SECRET, headers, body, now=NOW)


def test_every_delivery_is_rejected_when_no_secret_is_configured():
    body = _body(name="m", version="1")
    with pytest.raises(IdentityError, match="no MLflow webhook secret"):
        verify_delivery(b"", _headers(body), body, now=NOW)


def test_a_rotated_signature_list_is_accepted_when_one_entry_matches():
    body = _body(name="m", version="1")
    headers = _headers(body)
    headers["X-MLflow-Signature"] = "v1,AAAA " + headers["X-MLflow-Signature"]
    assert verify_delivery(SECRET, headers, body, now=NOW).delivery_id == DELIVERY


def test_a_version_without_run_id_and_with_a_logged_model_source_parses():
    kind, data = parse_event(_body(name="m", version="3", source="models:/m-abc", run_id=None))
    assert kind is EventKind.MODEL_VERSION_CREATED
    assert isinstance(data, ModelVersionData)
    assert data.source == "models:/m-abc"


def test_unknown_payload_fields_added_by_newer_mlflow_are_ignored():
    body = _body("model_version_alias", "created", name="m", alias="prod", version="2", new=1)
    _kind, data = parse_event(body)
    assert data == AliasData(name="m", alias="prod", version="2")


def test_an_event_mamori_does_not_act_on_is_recognised_as_ignored():
    assert parse_event(_body("prompt", "created", name="p")) == (None, None)


@pytest.mark.parametrize("version", ["0", "-1", "1.5", "x", "", "1; drop"])
def test_a_version_that_is_not_a_positive_integer_is_refused(version):
    with pytest.raises(RegistryError):
        parse_event(_body(name="m", version=version))


@given(st.binary(max_size=512))
def test_any_bytes_either_parse_or_raise_a_mamori_error(data):
    with contextlib.suppress(MamoriError):
        parse_event(data)


@given(st.binary(max_size=256), st.text(max_size=80))
def test_any_bytes_with_any_signature_only_ever_raise_identity_errors(body, signature):
    headers = _headers(body) | {"X-MLflow-Signature": signature}
    expected = _headers(body)["X-MLflow-Signature"]
    try:
        verify_delivery(SECRET, headers, body, now=NOW)
    except IdentityError:
        return
    assert expected in signature.split()


@pytest.mark.parametrize(
    ("alias", "protected"),
    [("production", True), ("Production", True), (" champion ", True), ("staging", False)],
)
def test_protected_aliases_are_compared_case_insensitively(alias, protected):
    assert is_protected(alias, ("production", "champion")) is protected


def test_a_digest_is_base64_of_the_raw_hmac():
    body = b"{}"
    raw = hmac.new(SECRET, f"{DELIVERY}.{NOW}.".encode() + body, hashlib.sha256).digest()
    assert sign(SECRET, DELIVERY, str(NOW), body) == "v1," + base64.b64encode(raw).decode()
