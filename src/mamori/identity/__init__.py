"""Who is calling: verified tokens become a :class:`Principal`; nothing else does."""

from __future__ import annotations

from mamori.identity.apitokens import ApiTokens, Scope
from mamori.identity.claims import ClaimMapping, MappedClaims, map_claims
from mamori.identity.issuer import DevIssuer
from mamori.identity.jwt import ASYMMETRIC_ALGORITHMS, JwksSource, VerifierConfig, verify_token
from mamori.identity.network import NetworkPolicy, RouteGroup
from mamori.identity.principal import Principal
from mamori.identity.subjects import SubjectRules, check_subject

__all__ = [
    "ASYMMETRIC_ALGORITHMS",
    "ApiTokens",
    "ClaimMapping",
    "DevIssuer",
    "JwksSource",
    "MappedClaims",
    "NetworkPolicy",
    "Principal",
    "RouteGroup",
    "Scope",
    "SubjectRules",
    "VerifierConfig",
    "check_subject",
    "map_claims",
    "verify_token",
]
