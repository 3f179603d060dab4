"""JWT verification against an operator-configured JWKS.

Everything that decides *which key* verifies a token comes from the operator's configuration,
never from the token: ``jku``, ``x5u`` and embedded ``jwk`` headers are refused outright
(they let the attacker name their own key), the algorithm must be on the allowlist and must
match the key's type (no RSA-public-key-as-HMAC-secret confusion), and ``exp``, ``iat``,
``sub``, ``aud`` and ``iss`` are required. Every failure becomes :class:`IdentityError`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import jwt

from mamori.errors import IdentityError
from mamori.identity.claims import ClaimMapping, map_claims
from mamori.identity.jwks import JwksSource
from mamori.identity.principal import Principal
from mamori.identity.subjects import check_subject

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "JwksSource",
    "VerifierConfig",
    "verify_token",
]

#: Only asymmetric algorithms: a shared-secret HMAC would make every relying party an issuer.
ASYMMETRIC_ALGORITHMS: frozenset[str] = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
#: Headers that let a token choose its own verification key; we never follow them.
_FORBIDDEN_HEADERS: frozenset[str] = frozenset({"jku", "x5u", "jwk", "x5c"})
_REQUIRED_CLAIMS: tuple[str, ...] = ("exp", "iat", "sub", "aud", "iss")
_KTY_FOR_ALG_PREFIX: Mapping[str, str] = MappingProxyType({"RS": "RSA", "PS": "RSA", "ES": "EC"})


@dataclass(frozen=True, slots=True)
class VerifierConfig:
    """What a token must satisfy. Built by the operator, never from request data.

    Attributes:
        issuer: the only accepted ``iss``.
        audience: the only accepted ``aud``.
        jwks: where the verification keys come from.
        algorithms: allowlist, a subset of :data:`ASYMMETRIC_ALGORITHMS`.
        leeway_seconds: clock skew tolerated on ``exp``/``iat``/``nbf``.
        max_lifetime_seconds: refuse tokens whose ``exp - iat`` exceeds this.
        claims: the identity source's claim mapping (IdP groups/roles → mamori roles and
            principal attributes; unmapped values grant nothing). When ``None`` (deprecated,
            for issuers that mint mamori's own role names), roles are read from
            ``roles_claim`` as given and ``attribute_claims`` are copied as they are.
        roles_claim: without ``claims``, the claim holding a list of role names.
        tenant_claim: the claim holding the tenant id.
        attribute_claims: without ``claims``, string claims copied into
            :attr:`Principal.attributes`.
        mfa_claim: the claim listing authentication methods (OIDC ``amr``); when set, the
            principal's ``mfa`` attribute is ``"true"`` exactly when it contains ``mfa_value``
            and ``"false"`` otherwise, whatever other claims say.
        mfa_value: the method name that means multi-factor authentication.
    """

    issuer: str
    audience: str
    jwks: JwksSource
    algorithms: frozenset[str] = frozenset({"RS256", "ES256"})
    leeway_seconds: int = 30
    max_lifetime_seconds: int = 24 * 3600
    claims: ClaimMapping | None = None
    roles_claim: str = "roles"
    tenant_claim: str = "tenant"
    attribute_claims: frozenset[str] = frozenset()
    mfa_claim: str | None = None
    mfa_value: str = "mfa"

    def __post_init__(self) -> None:
        """Refuse an empty or symmetric algorithm allowlist at configuration time."""
        if not self.algorithms:
            raise IdentityError("the algorithm allowlist is empty")
        if not self.algorithms <= ASYMMETRIC_ALGORITHMS:
            bad = sorted(self.algorithms - ASYMMETRIC_ALGORITHMS)
            msg = f"algorithms not allowed: {bad}"
            raise IdentityError(msg)
        if not self.issuer or not self.audience:
            raise IdentityError("issuer and audience must be configured")


def _header(token: str) -> dict[str, Any]:
    # Read only to choose the key and the algorithm; PyJWT parses the token again, strictly,
    # and refuses it unless its own reading carries the same algorithm and the signature
    # verifies. Parsing it here instead of through PyJWT halves the cost of a verification.
    head, dot, _ = token.partition(".")
    try:
        header = json.loads(
            base64.b64decode(head + "=" * (-len(head) % 4), altchars=b"-_", validate=True)
        )
    except (ValueError, TypeError) as exc:  # binascii.Error and JSONDecodeError included
        raise IdentityError("malformed token") from exc
    if not dot or not isinstance(header, dict):
        raise IdentityError("malformed token")
    return header


def verify_token(token: str, config: VerifierConfig) -> Principal:
    """Verify ``token`` and return the :class:`Principal` it proves.

    Raises:
        IdentityError: on any failure (signature, algorithm, key lookup, claims, lifetime).
    """
    header = _header(token)
    forbidden = _FORBIDDEN_HEADERS & header.keys()
    if forbidden:
        msg = f"token header names its own key ({min(forbidden)}); refused"
        raise IdentityError(msg)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in config.algorithms:
        raise IdentityError("token algorithm is not on the allowlist")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise IdentityError("token has no key id")
    kty, key = config.jwks.key_for(kid)
    # The algorithm family must match the key type, so an RSA key is never used as an EC one.
    if _KTY_FOR_ALG_PREFIX.get(alg[:2]) != kty:
        raise IdentityError("token algorithm does not match the key type")
    try:
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[alg],
            audience=config.audience,
            issuer=config.issuer,
            leeway=config.leeway_seconds,
            options={"require": list(_REQUIRED_CLAIMS), "verify_signature": True},
        )
    except jwt.PyJWTError as exc:
        raise IdentityError("token verification failed") from exc
    return _principal_from_claims(claims, config)


def _principal_from_claims(claims: Mapping[str, Any], config: VerifierConfig) -> Principal:
    exp, iat = claims["exp"], claims["iat"]
    if not isinstance(exp, int) or not isinstance(iat, int):
        raise IdentityError("exp and iat must be integers")
    if exp - iat > config.max_lifetime_seconds:
        raise IdentityError("token lifetime exceeds the configured maximum")
    subject = check_subject(claims["sub"])
    tenant = claims.get(config.tenant_claim, "")
    if not isinstance(tenant, str):
        raise IdentityError("tenant claim must be a string")
    if config.claims is not None:
        mapped = map_claims(claims, config.claims)
        roles, attributes = mapped.roles, dict(mapped.attributes)
    else:
        roles, attributes = _as_given(claims, config)
    if config.mfa_claim is not None:
        # Set last so that a plain string claim named "mfa" can never assert MFA by itself.
        attributes["mfa"] = (
            "true" if _asserts_mfa(claims.get(config.mfa_claim), config) else "false"
        )
    jti = claims.get("jti", "")
    return Principal(
        subject=subject,
        issuer=str(claims["iss"]),
        tenant=tenant,
        roles=roles,
        attributes=MappingProxyType(attributes),
        token_id=jti if isinstance(jti, str) else "",
        expires_at=exp,
    )


def _as_given(
    claims: Mapping[str, Any], config: VerifierConfig
) -> tuple[frozenset[str], dict[str, str]]:
    """Roles and attributes without a claim mapping: the token's own role names."""
    roles_raw = claims.get(config.roles_claim, [])
    if not isinstance(roles_raw, list) or not all(isinstance(r, str) for r in roles_raw):
        raise IdentityError("roles claim must be a list of strings")
    attributes: dict[str, str] = {}
    for name in sorted(config.attribute_claims):
        value = claims.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            msg = f"claim {name!r} must be a string"
            raise IdentityError(msg)
        attributes[name] = value
    return frozenset(roles_raw), attributes


def _asserts_mfa(value: Any, config: VerifierConfig) -> bool:
    """``amr`` is a list of method names (RFC 8176); a few issuers send one string."""
    if isinstance(value, str):
        return value == config.mfa_value
    if isinstance(value, list):
        return any(isinstance(v, str) and v == config.mfa_value for v in value)
    return False
