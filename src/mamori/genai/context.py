"""The trusted session context: built only from a verified token, never from model output.

:class:`TrustedContext` can only be created by :class:`ContextFactory` (its constructor demands
a private capability object), is frozen, and is passed to tools by the gateway, out of band from
anything the model writes. A prompt that says "I am a doctor" has no path into it.

A context is not a permanent grant: it carries the token's ``exp`` and ``nbf`` and the
verifier's leeway, and every use re-checks them and the store's revocations through
:meth:`mamori.genai.ConversationStore.liveness` (the factory, the authorizer and the gateway
all call that one check).
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mamori.errors import ConfigError, IdentityError
from mamori.genai.statuslist import StatusReference, status_reference
from mamori.identity import Principal, VerifierConfig, verify_token
from mamori.policy import Entity, EntityUid

if TYPE_CHECKING:
    from mamori.genai.state import ConversationStore

__all__ = ["ContextFactory", "Domain", "TrustedContext"]


class _Capability:
    """Only this module holds an instance; it gates :class:`TrustedContext` construction."""


_CAPABILITY = _Capability()


@dataclass(frozen=True, slots=True)
class Domain:
    """How a principal maps onto a Cedar schema (entity type names and copied attributes)."""

    namespace: str
    user_type: str = "User"
    role_type: str = "Role"
    #: principal attributes copied into the Cedar ``User`` entity (claim name -> attr name).
    attribute_map: Mapping[str, str] = field(default_factory=dict)

    def entity_type(self, name: str) -> str:
        """Qualify ``name`` with the namespace."""
        return f"{self.namespace}::{name}"

    def action(self, name: str) -> EntityUid:
        """The action entity ``Namespace::Action::"name"``."""
        return EntityUid(self.entity_type("Action"), name)


@dataclass(frozen=True, slots=True)
class TrustedContext:
    """The verified end user of one session."""

    principal: Principal
    domain: Domain
    _capability: _Capability = field(repr=False, compare=False)
    #: The token's ``nbf`` (0 when absent); ``exp`` is ``principal.expires_at``.
    not_before: int = 0
    #: The verifier's clock-skew leeway, applied again on every use.
    leeway_seconds: int = 0
    #: The token's entry in its issuer's Token Status List, if it has one.
    status: StatusReference | None = None
    #: The principal's Cedar entity reference.
    uid: EntityUid = field(init=False, repr=False, compare=False)
    #: ``uid`` in Cedar syntax, as audit records name the principal.
    uid_text: str = field(init=False, repr=False, compare=False)
    #: Every field of the principal that can change an authorization (keys the caches).
    cache_key: tuple[object, ...] = field(init=False, repr=False, compare=False)
    _entities: tuple[Entity, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        """Refuse construction by anyone but :class:`ContextFactory`; derive the rest once.

        What every request reads is derived here, once per session, not once per decision.
        """
        if self._capability is not _CAPABILITY:
            raise IdentityError("a trusted context can only be built from a verified token")
        uid = EntityUid(self.domain.entity_type(self.domain.user_type), self.principal.subject)
        object.__setattr__(self, "uid", uid)
        object.__setattr__(self, "uid_text", str(uid))
        object.__setattr__(self, "cache_key", self.principal.cache_key())
        object.__setattr__(self, "_entities", self._build_entities())

    @property
    def tenant(self) -> str:
        """The verified tenant."""
        return self.principal.tenant

    @property
    def roles(self) -> frozenset[str]:
        """The verified roles."""
        return self.principal.roles

    def entities(self) -> tuple[Entity, ...]:
        """The principal and role entities that every Cedar request needs."""
        return self._entities

    def _build_entities(self) -> tuple[Entity, ...]:
        role_type = self.domain.entity_type(self.domain.role_type)
        roles = tuple(EntityUid(role_type, r) for r in sorted(self.principal.roles))
        attrs: dict[str, str] = {"tenant": self.principal.tenant, "user_id": self.principal.subject}
        for claim, attr in self.domain.attribute_map.items():
            if claim in self.principal.attributes:
                attrs[attr] = self.principal.attributes[claim]
        user = Entity(self.uid, attrs, roles)
        return (user, *(Entity(r) for r in roles))


class ContextFactory:
    """Verifies tokens and builds :class:`TrustedContext` objects."""

    def __init__(self, config: VerifierConfig, domain: Domain, state: ConversationStore) -> None:
        """Bind the verifier configuration, the Cedar domain and the store-backed state.

        ``config`` must carry the identity source's claim mapping (``VerifierConfig.claims``):
        roles come only through it, the same mapping the service uses, never as the token
        names them.
        """
        if config.claims is None:
            msg = (
                "a GenAI context takes roles only through a claim mapping; "
                "set VerifierConfig.claims (mamori.identity.ClaimMapping)"
            )
            raise ConfigError(msg)
        self._config = config
        self._domain = domain
        self.state = state

    def from_token(self, token: str) -> TrustedContext:
        """Verify ``token`` and return its context. Raises :class:`IdentityError`."""
        principal = verify_token(token, self._config)
        claims = _verified_claims(token)
        ctx = TrustedContext(
            principal,
            self._domain,
            _CAPABILITY,
            not_before=_nbf(claims),
            leeway_seconds=self._config.leeway_seconds,
            status=status_reference(claims),
        )
        # The same check every later use makes: expiry, not-before and the store's revocations.
        liveness = self.state.liveness(ctx)
        if not liveness.live:
            msg = f"the token cannot be used: {liveness.refusal}"
            raise IdentityError(msg)
        return ctx


def _verified_claims(token: str) -> dict[str, Any]:
    """The claims of a token that :func:`verify_token` has just accepted.

    The signature covers these bytes, so the payload is the issuer's. PyJWT has already
    checked ``nbf`` against the clock once; the context keeps it (and the token's status list
    entry) for the checks on every later use.
    """
    payload = token.split(".")[1]
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except ValueError as exc:  # binascii.Error and JSONDecodeError included
        raise IdentityError("malformed token") from exc
    if not isinstance(claims, dict):
        raise IdentityError("malformed token")
    return claims


def _nbf(claims: Mapping[str, Any]) -> int:
    nbf = claims.get("nbf", 0)
    if isinstance(nbf, bool) or not isinstance(nbf, int | float):
        raise IdentityError("nbf must be a number")
    return math.ceil(nbf)
