"""Claim mapping: which mamori roles and principal attributes a verified token yields.

An identity provider speaks in its own groups and roles (``ml-approvers``, a group UUID,
``cognito:groups``); mamori's policies speak in mamori roles (``approver``) and principal
attributes (``patient_id``). A :class:`ClaimMapping` is the operator's table between the two,
the way an Amazon Verified Permissions identity source or a Cedarling token mapping is:

- ``roles``: for each claim that carries group or role names, which mamori roles each IdP
  value grants. A value the table does not list grants **nothing**: a token that lists roles
  the operator never mapped gains nothing from them, whatever it calls them.
- ``attributes``: claims copied, as strings, into :attr:`Principal.attributes` (which become
  Cedar principal attributes) under the given attribute name.
- ``exclusive``: sets of mamori roles that one token may not hold together (separation of
  duties, e.g. ``{"receptionist", "doctor"}``); a token mapping to two of one set is refused
  rather than granted the union.

The one entry point is :func:`map_claims`; :func:`mamori.identity.verify_token` calls it when
it builds a :class:`~mamori.identity.principal.Principal`, so the service and
:mod:`mamori.genai` get the same roles from the same token. Usage::

    mapping = ClaimMapping(
        roles={"groups": {"ml-approvers": {"approver"}, "ml-admins": {"admin", "approver"}}},
        attributes={"patient_id": "patient_id"},
    )
    config = VerifierConfig(issuer=..., audience=..., jwks=..., claims=mapping)
    mapped = map_claims(verified_claims, mapping)  # -> MappedClaims(roles, attributes)

A mapped claim that is present but malformed (not a string or a list of strings, or longer
than :data:`MAX_CLAIM_VALUES`) makes :func:`map_claims` raise :class:`IdentityError`: the
token is refused rather than read as "no roles" or half-read.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

from mamori.errors import IdentityError

__all__ = [
    "MAX_CLAIM_VALUES",
    "RESERVED_ATTRIBUTES",
    "ClaimMapping",
    "MappedClaims",
    "map_claims",
]

MAX_CLAIM_VALUES: Final = 256
"""A role/group claim with more values is refused (bounds the work a token can cause)."""

RESERVED_ATTRIBUTES: Final = frozenset({"mfa", "scopes"})
"""Attribute names only mamori sets (MFA from the ``amr`` rule, API-token scopes)."""

#: mamori role and attribute names: what a Cedar entity id or attribute name can carry as is.
_NAME: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$")


def _frozen_roles(
    table: Mapping[str, Mapping[str, Iterable[str]]],
) -> Mapping[str, Mapping[str, frozenset[str]]]:
    return MappingProxyType(
        {
            claim: MappingProxyType({value: frozenset(roles) for value, roles in values.items()})
            for claim, values in table.items()
        }
    )


@dataclass(frozen=True, slots=True)
class MappedClaims:
    """What a token yields after mapping: mamori roles and principal attributes."""

    roles: frozenset[str]
    attributes: Mapping[str, str]


@dataclass(frozen=True, slots=True, init=False)
class ClaimMapping:
    """An identity source's mapping from IdP claims to mamori roles and attributes.

    Attributes:
        roles: claim name → IdP value → mamori roles that value grants.
        attributes: claim name → principal attribute name (string-valued claims only).
        exclusive: sets of mamori roles a single token may not hold together.
    """

    roles: Mapping[str, Mapping[str, frozenset[str]]]
    attributes: Mapping[str, str]
    exclusive: tuple[frozenset[str], ...] = field(default=())

    def __init__(
        self,
        roles: Mapping[str, Mapping[str, Iterable[str]]] | None = None,
        attributes: Mapping[str, str] | None = None,
        exclusive: Iterable[Iterable[str]] = (),
    ) -> None:
        """Validate and freeze the tables; a bad entry raises :class:`IdentityError`."""
        frozen = _frozen_roles(roles or {})
        attrs = MappingProxyType(dict(attributes or {}))
        groups = tuple(frozenset(group) for group in exclusive)
        object.__setattr__(self, "roles", frozen)
        object.__setattr__(self, "attributes", attrs)
        object.__setattr__(self, "exclusive", groups)
        self._validate()

    @classmethod
    def identity(cls, roles: Iterable[str], *, claim: str = "roles") -> ClaimMapping:
        """Map each of ``roles``, listed in ``claim``, to the mamori role of the same name.

        For an issuer that already speaks mamori's role names (the development issuer):
        names outside ``roles`` still grant nothing.
        """
        return cls(roles={claim: {role: {role} for role in roles}})

    def _validate(self) -> None:
        for claim, values in self.roles.items():
            if not claim:
                raise IdentityError("claim mapping: a role claim name is empty")
            bad = sorted(r for granted in values.values() for r in granted if not _NAME.match(r))
            if bad:
                msg = f"claim mapping: claim {claim!r} grants bad role names {bad}"
                raise IdentityError(msg)
        for claim, attr in self.attributes.items():
            if not claim or not _NAME.match(attr):
                msg = f"claim mapping: bad attribute mapping {claim!r} -> {attr!r}"
                raise IdentityError(msg)
            if attr in RESERVED_ATTRIBUTES:
                msg = f"claim mapping: attribute {attr!r} is set by mamori, not by a claim"
                raise IdentityError(msg)
        for group in self.exclusive:
            if len(group) < 2:  # noqa: PLR2004 -- "exclusive" needs two roles to mean anything
                raise IdentityError("claim mapping: an exclusive set needs two or more roles")

    @property
    def role_claims(self) -> tuple[str, ...]:
        """The claims that carry group or role names."""
        return tuple(self.roles)

    @property
    def known_roles(self) -> frozenset[str]:
        """Every mamori role some claim value can grant."""
        return frozenset(
            role
            for values in self.roles.values()
            for granted in values.values()
            for role in granted
        )


def _values(claims: Mapping[str, Any], claim: str) -> tuple[str, ...]:
    raw = claims.get(claim)
    if raw is None:
        return ()
    # A few IdPs send a single group as a bare string rather than a one-element list.
    if isinstance(raw, str):
        return (raw,)
    if not isinstance(raw, list) or not all(isinstance(v, str) for v in raw):
        msg = f"claim {claim!r} must be a string or a list of strings"
        raise IdentityError(msg)
    if len(raw) > MAX_CLAIM_VALUES:
        msg = f"claim {claim!r} lists more than {MAX_CLAIM_VALUES} values"
        raise IdentityError(msg)
    return tuple(raw)


def map_claims(claims: Mapping[str, Any], mapping: ClaimMapping) -> MappedClaims:
    """Map verified ``claims`` through ``mapping``.

    Only call this on claims whose signature, issuer and audience were verified.

    Raises:
        IdentityError: a mapped claim is malformed, or the roles break an exclusive set.
    """
    roles: set[str] = set()
    for claim, table in mapping.roles.items():
        for value in _values(claims, claim):
            granted = table.get(value)
            if granted is not None:
                roles |= granted
    for group in mapping.exclusive:
        held = group & roles
        if len(held) > 1:
            msg = f"token maps to roles that may not be held together: {sorted(held)}"
            raise IdentityError(msg)
    attributes: dict[str, str] = {}
    for claim, attr in sorted(mapping.attributes.items()):
        raw = claims.get(claim)
        if raw is None:
            continue
        if not isinstance(raw, str):
            msg = f"claim {claim!r} must be a string"
            raise IdentityError(msg)
        attributes[attr] = raw
    return MappedClaims(frozenset(roles), MappingProxyType(attributes))
