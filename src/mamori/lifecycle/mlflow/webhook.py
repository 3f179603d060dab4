"""Verify MLflow webhook deliveries and parse their payloads.

MLflow (>= 3.3) signs ``"{delivery_id}.{timestamp}.{body}"`` with HMAC-SHA256 and sends
``X-MLflow-Signature: v1,<base64>`` (``mlflow/webhooks/delivery.py::_generate_hmac_signature``).
We recompute it over the *raw* request bytes, before any JSON parsing, and compare in constant
time. A delivery outside the replay window is refused, and its id may be recorded only once
(:mod:`mamori.lifecycle.mlflow.events`), so a captured delivery cannot be replayed later.

Payload models ignore unknown fields (``extra="ignore"``), unlike the rest of mamori's
boundaries: MLflow adds envelope and payload fields between releases (``workspace`` in 3.5,
``model_id``), and refusing them would silently drop every event after an MLflow upgrade. Only
fields we read can influence a decision, each is typed and validated, and the whole body is
already authenticated by the HMAC.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Final

from pydantic import BaseModel, ConfigDict, StringConstraints, ValidationError

from mamori.errors import IdentityError, RegistryError

__all__ = [
    "DELIVERY_HEADER",
    "REPLAY_WINDOW_SECONDS",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "AliasData",
    "Delivery",
    "EventKind",
    "ModelVersionData",
    "PromptVersionData",
    "RegisteredModelData",
    "TagData",
    "parse_event",
    "sign",
    "verify_delivery",
]

SIGNATURE_HEADER: Final = "X-MLflow-Signature"
TIMESTAMP_HEADER: Final = "X-MLflow-Timestamp"
DELIVERY_HEADER: Final = "X-MLflow-Delivery-Id"
REPLAY_WINDOW_SECONDS: Final = 300
"""Deliveries older (or newer) than five minutes are refused."""

_VERSION: Final = "v1"
_DELIVERY_ID: Final = re.compile(r"^[A-Za-z0-9-]{8,128}$")
_TIMESTAMP: Final = re.compile(r"^[0-9]{1,12}$")
_MAX_SIGNATURE: Final = 1024

Name = Annotated[str, StringConstraints(min_length=1, max_length=512)]
VersionNumber = Annotated[str, StringConstraints(pattern=r"^[1-9][0-9]{0,17}$")]
Alias = Annotated[str, StringConstraints(min_length=1, max_length=255)]


class EventKind(enum.StrEnum):
    """The MLflow events mamori acts on (``entity.action`` as MLflow writes them)."""

    REGISTERED_MODEL_CREATED = "registered_model.created"
    MODEL_VERSION_CREATED = "model_version.created"
    MODEL_VERSION_TAG_SET = "model_version_tag.set"
    MODEL_VERSION_ALIAS_CREATED = "model_version_alias.created"
    # MLflow sends the prompt events instead of the model ones when the registered model (or,
    # for a new version, the request) carries ``mlflow.prompt.is_prompt=true``, a tag any EDIT
    # user can set: a model alias would otherwise reach mamori as an event it ignores.
    PROMPT_VERSION_CREATED = "prompt_version.created"
    PROMPT_ALIAS_CREATED = "prompt_alias.created"


@dataclass(frozen=True, slots=True)
class Delivery:
    """An authenticated delivery: its id, signed timestamp and raw body."""

    delivery_id: str
    timestamp: int
    body: bytes


def sign(secret: bytes, delivery_id: str, timestamp: str, body: bytes) -> str:
    """The ``X-MLflow-Signature`` value MLflow sends for these exact bytes."""
    content = f"{delivery_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret, content, hashlib.sha256).digest()
    return f"{_VERSION},{base64.b64encode(digest).decode('ascii')}"


def verify_delivery(
    secret: bytes,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float,
    window: int = REPLAY_WINDOW_SECONDS,
) -> Delivery:
    """Authenticate one delivery; raise :class:`IdentityError` saying why it is refused.

    ``headers`` must be case-insensitive (Starlette's are). The signature is checked before the
    timestamp so that an unauthenticated caller learns nothing about the clock.
    """
    if not secret:
        raise IdentityError("no MLflow webhook secret is configured; refusing every delivery")
    delivery_id = headers.get(DELIVERY_HEADER, "")
    timestamp = headers.get(TIMESTAMP_HEADER, "")
    signature = headers.get(SIGNATURE_HEADER, "")
    if not _DELIVERY_ID.fullmatch(delivery_id):
        msg = f"missing or malformed {DELIVERY_HEADER}"
        raise IdentityError(msg)
    if not _TIMESTAMP.fullmatch(timestamp):
        msg = f"missing or malformed {TIMESTAMP_HEADER}"
        raise IdentityError(msg)
    if not signature or len(signature) > _MAX_SIGNATURE:
        msg = f"missing or oversized {SIGNATURE_HEADER}"
        raise IdentityError(msg)
    expected = sign(secret, delivery_id, timestamp, body).encode("ascii")
    # MLflow sends one signature; tolerate a space-separated list (secret rotation), as the
    # Standard Webhooks convention does, and accept when any v1 entry matches.
    matched = False
    for candidate in signature.split():
        version, _, value = candidate.partition(",")
        if version != _VERSION:
            continue
        try:
            base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            continue
        matched |= hmac.compare_digest(expected, candidate.encode("ascii", "replace"))
    if not matched:
        raise IdentityError("webhook signature does not match")
    stamp = int(timestamp)
    if abs(now - stamp) > window:
        msg = f"webhook timestamp is outside the {window}-second replay window"
        raise IdentityError(msg)
    return Delivery(delivery_id=delivery_id, timestamp=stamp, body=body)


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, strict=True)


class _Envelope(_Model):
    entity: Annotated[str, StringConstraints(max_length=64)]
    action: Annotated[str, StringConstraints(max_length=64)]
    data: dict[str, Any]


class RegisteredModelData(_Model):
    """``registered_model.created``."""

    name: Name


class ModelVersionData(_Model):
    """``model_version.created``: ``source`` may be ``models:/m-…`` and ``run_id`` absent."""

    name: Name
    version: VersionNumber
    source: str | None = None
    run_id: str | None = None


class TagData(_Model):
    """``model_version_tag.set``: only the version is used; a tag never decides anything."""

    name: Name
    version: VersionNumber
    key: str
    value: str


class PromptVersionData(_Model):
    """``prompt_version.created``: the version of a prompt-tagged model."""

    name: Name
    version: VersionNumber


class AliasData(_Model):
    """``model_version_alias.created`` and ``prompt_alias.created`` (same fields)."""

    name: Name
    alias: Alias
    version: VersionNumber


EventData = RegisteredModelData | ModelVersionData | TagData | AliasData | PromptVersionData

_DATA: Final[Mapping[EventKind, type[EventData]]] = {
    EventKind.REGISTERED_MODEL_CREATED: RegisteredModelData,
    EventKind.MODEL_VERSION_CREATED: ModelVersionData,
    EventKind.MODEL_VERSION_TAG_SET: TagData,
    EventKind.MODEL_VERSION_ALIAS_CREATED: AliasData,
    EventKind.PROMPT_VERSION_CREATED: PromptVersionData,
    EventKind.PROMPT_ALIAS_CREATED: AliasData,
}


def parse_event(body: bytes) -> tuple[EventKind | None, EventData | None]:
    """The event kind and its validated data; ``(None, None)`` for an event mamori ignores.

    Raises :class:`RegistryError` for a body that is not a well-formed MLflow envelope, or a
    handled event whose data lacks a field mamori needs.
    """
    try:
        envelope = _Envelope.model_validate(json.loads(body))
    except (ValueError, ValidationError) as exc:
        raise RegistryError("webhook body is not an MLflow event envelope") from exc
    try:
        kind = EventKind(f"{envelope.entity}.{envelope.action}")
    except ValueError:
        return None, None
    try:
        return kind, _DATA[kind].model_validate(envelope.data)
    except ValidationError as exc:
        msg = f"{kind.value} payload is missing or has invalid fields"
        raise RegistryError(msg) from exc
