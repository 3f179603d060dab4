"""Who is calling: verified tokens become a :class:`Principal`; nothing else does."""

from __future__ import annotations

from mamori.identity.apitokens import ApiTokens, Scope
from mamori.identity.issuer import DevIssuer
from mamori.identity.jwt import ASYMMETRIC_ALGORITHMS, JwksSource, VerifierConfig, verify_token
from mamori.identity.network import NetworkPolicy, RouteGroup
from mamori.identity.principal import Principal

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "ApiTokens",
    "DevIssuer",
    "JwksSource",
    "NetworkPolicy",
    "Principal",
    "RouteGroup",
    "Scope",
    "VerifierConfig",
    "verify_token",
]
