"""The OpenID AuthZEN Authorization API 1.0 over the GenAI library's decisions.

A non-Python app (the policy enforcement point) asks "may this subject do this action on this
resource?" and gets the same answer, from the same Cedar policies, with the same audit record,
as :meth:`mamori.genai.Authorizer.check` gives a Python caller. Three rules keep it honest:

1. The subject is never taken from the request body. The app forwards the end user's JWT; it is
   verified by the same :class:`ContextFactory` (issuer, audience, claim mapping, expiry,
   revocations) as the library's. A body ``subject.id`` or ``subject.type`` that differs from
   the verified token, or any body ``subject.properties``, is a deny, never an override.
2. Resource attributes come from the trusted resolver when one is configured (the source
   system), never from the caller; without a resolver the PEP's ``resource.properties`` are
   the attributes (the PEP owns its data, and it authenticated with a decision-scoped token).
3. Every failure (token, resolver, policy engine, audit store) is ``decision: false`` with a
   reason for the administrator; nothing raises past :meth:`AuthZenPdp.evaluate`.

The filter extension returns the policy's residual filter for a resource type as a documented
JSON tree (see :func:`filter_to_json`), and compiled for Qdrant and for SQL.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, assert_never

from sqlalchemy import Column, MetaData, String, Table, column, select, table
from sqlalchemy.dialects import postgresql, sqlite

from mamori.errors import ConfigError, IdentityError, PolicyError, StoreError
from mamori.genai.compile import SetColumn, to_qdrant, to_sql
from mamori.genai.retrieval import prefix_fields
from mamori.policy import (
    And,
    Const,
    Entity,
    EntityUid,
    FieldCompare,
    FieldContains,
    FieldContainsAny,
    FieldEq,
    FieldExists,
    FilterNode,
    Not,
    Or,
    simplify,
)

if TYPE_CHECKING:
    from mamori.genai.authorizer import Authorizer
    from mamori.genai.context import ContextFactory, TrustedContext
    from mamori.genai.gateway import ResourceResolver

__all__ = [
    "AccessDecision",
    "AccessRequest",
    "AuthZenPdp",
    "EvaluationsSemantic",
    "ResidualFilter",
    "SqlMapping",
    "filter_to_json",
]

UNVERIFIED_SUBJECT: Final = "unverified-subject-token"
"""How the audit log names the principal of a request whose subject token was rejected."""

_IDENTIFIER: Final = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class EvaluationsSemantic(enum.StrEnum):
    """How a batch of evaluations is run (AuthZEN 1.0, section 7.1.2)."""

    EXECUTE_ALL = "execute_all"
    DENY_ON_FIRST_DENY = "deny_on_first_deny"
    PERMIT_ON_FIRST_PERMIT = "permit_on_first_permit"


@dataclass(frozen=True, slots=True)
class AccessRequest:
    """One evaluation, after the batch defaults are applied. Built by the HTTP layer."""

    subject_id: str
    action: str
    resource_type: str
    resource_id: str
    subject_type: str | None = None
    subject_properties: Mapping[str, Any] = field(default_factory=dict)
    resource_properties: Mapping[str, Any] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class AccessDecision:
    """The answer to one evaluation."""

    allowed: bool
    reason: str
    policy_ids: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The AuthZEN response body: ``decision`` and a ``context`` for the administrator."""
        return {
            "decision": self.allowed,
            "context": {"reason_admin": {"en": self.reason}, "policy_ids": list(self.policy_ids)},
        }


@dataclass(frozen=True, slots=True)
class SqlMapping:
    """Where the resource's attributes live in SQL: one table, set-valued fields in side tables.

    Every name is checked to be a plain identifier; values are always bound parameters.
    """

    table: str
    id_column: str = "id"
    #: set-valued field -> (side table, owner column, value column).
    set_tables: Mapping[str, tuple[str, str, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Refuse anything that is not a plain SQL identifier."""
        names = [self.table, self.id_column]
        for name, side in self.set_tables.items():
            names.extend((name, *side))
        for name in names:
            if not _IDENTIFIER.fullmatch(name):
                msg = f"not a plain SQL identifier: {name!r}"
                raise ConfigError(msg)


@dataclass(frozen=True, slots=True)
class ResidualFilter:
    """The items of one resource type a subject may act on, as a filter."""

    node: FilterNode

    def to_json(self) -> dict[str, Any]:
        """The documented JSON tree (:func:`filter_to_json`)."""
        return filter_to_json(self.node)

    def qdrant(self, payload_prefix: str = "acl.") -> dict[str, Any] | None:
        """The Qdrant ``Filter`` as JSON (``None`` for a constant: no query is needed)."""
        if isinstance(self.node, Const):
            return None
        # to_qdrant refuses constants; a constant means "no query", said by returning None.
        compiled = to_qdrant(prefix_fields(self.node, payload_prefix))
        dumped: dict[str, Any] = compiled.model_dump(mode="json", exclude_none=True)
        return dumped

    def sql(self, mapping: SqlMapping, dialect: str = "postgresql") -> dict[str, Any]:
        """A ``WHERE`` clause with ``:name`` bind parameters (values never enter the text).

        Scalar fields are columns of ``mapping.table`` with the field's name; set-valued ones
        are ``EXISTS`` over their side table, correlated on ``mapping.id_column``.

        Raises:
            ConfigError: the filter names a set-valued field ``mapping`` does not place, or the
                dialect is unknown.
        """
        dialects: dict[str, Any] = {
            # Named parameters (``:name``) in both, so the documented form is one.
            "postgresql": postgresql.dialect(paramstyle="named"),  # type: ignore[no-untyped-call]  # untyped upstream
            "sqlite": sqlite.dialect(paramstyle="named"),
        }
        if dialect not in dialects:
            msg = f"unknown SQL dialect {dialect!r}; use one of {sorted(dialects)}"
            raise ConfigError(msg)
        names = _fields(self.node)
        for name in names - set(mapping.set_tables):
            if not _IDENTIFIER.fullmatch(name):
                msg = f"field {name!r} is not a plain SQL column name; map it"
                raise ConfigError(msg)
        # Qualified by the table, so a side table's own columns can never capture a name.
        main = table(mapping.table, *(column(n) for n in {mapping.id_column, *names}))
        owner = main.c[mapping.id_column]
        columns: dict[str, Any] = {}
        for name in names:
            side = mapping.set_tables.get(name)
            if side is None:
                columns[name] = main.c[name]
                continue
            side_name, owner_col, value_col = side
            side_table = Table(
                side_name, MetaData(), Column(owner_col, String), Column(value_col, String)
            )
            columns[name] = SetColumn(side_table, owner_col, value_col, owner)
        try:
            expression = to_sql(self.node, columns)
        except PolicyError as exc:
            msg = f"cannot compile the filter for this SQL mapping: {exc}"
            raise ConfigError(msg) from exc
        # Compiled inside the SELECT over the table: an EXISTS compiled on its own would list
        # the table in its own FROM (uncorrelated: true if *any* row matched), a leak.
        statement = select(owner).where(expression)
        compiled = statement.compile(dialect=dialects[dialect])
        text = str(compiled)
        head, sep, where = text.partition("\nWHERE ")
        if not sep or head.split() != [
            "SELECT",
            f"{mapping.table}.{mapping.id_column}",
            "FROM",
            mapping.table,
        ]:
            # e.g. a reserved word the dialect quotes: we return no clause we did not expect.
            msg = "these SQL names need quoting (reserved words?); use plain names"
            raise ConfigError(msg)
        return {"select": text, "where": where, "params": dict(compiled.params)}


def _fields(node: FilterNode) -> set[str]:
    match node:
        case Const():
            return set()
        case And(children=kids) | Or(children=kids):
            return set().union(*(_fields(k) for k in kids))
        case Not(child=child):
            return _fields(child)
        case (
            FieldEq(field=name)
            | FieldContains(field=name)
            | FieldContainsAny(field=name)
            | FieldExists(field=name)
            | FieldCompare(field=name)
        ):
            return {name}
        case _:
            assert_never(node)


def filter_to_json(node: FilterNode) -> dict[str, Any]:  # noqa: PLR0911 -- closed node set
    """The residual filter as JSON: one object per node, with exactly one key.

    ``{"const": bool}``, ``{"eq": {"field", "value"}}``, ``{"contains": {"field", "value"}}``
    (a set-valued field holds the value), ``{"contains_any": {"field", "values"}}``,
    ``{"exists": {"field"}}``, ``{"compare": {"field", "op": "<"|"<="|">"|">=", "value"}}``,
    ``{"and": [...]}``, ``{"or": [...]}``, ``{"not": node}``. Fields name the resource's
    attributes as the Cedar schema does.
    """
    match node:
        case Const(value=value):
            return {"const": value}
        case FieldEq(field=name, value=value):
            return {"eq": {"field": name, "value": value}}
        case FieldContains(field=name, value=value):
            return {"contains": {"field": name, "value": value}}
        case FieldContainsAny(field=name, values=values):
            return {"contains_any": {"field": name, "values": list(values)}}
        case FieldExists(field=name):
            return {"exists": {"field": name}}
        case FieldCompare(field=name, op=op, value=value):
            return {"compare": {"field": name, "op": op.value, "value": value}}
        case And(children=kids):
            return {"and": [filter_to_json(k) for k in kids]}
        case Or(children=kids):
            return {"or": [filter_to_json(k) for k in kids]}
        case Not(child=child):
            return {"not": filter_to_json(child)}
        case _:
            assert_never(node)


class AuthZenPdp:
    """A policy decision point answering AuthZEN requests with the library's authorizer."""

    def __init__(
        self,
        factory: ContextFactory,
        authorizer: Authorizer,
        *,
        resolver: ResourceResolver | None = None,
    ) -> None:
        """Bind the token verifier, the authorizer (policies, caches, audit) and the resolver.

        With ``resolver``, resource attributes come only from it and a resource it does not
        know is a deny; without one, from the request's ``resource.properties``.
        """
        self._factory = factory
        self._authorizer = authorizer
        self._resolver = resolver

    def subject(self, token: str) -> TrustedContext:
        """Verify the forwarded end-user token. Raises :class:`IdentityError`."""
        return self._factory.from_token(token)

    def evaluate(self, subject_token: str, request: AccessRequest) -> AccessDecision:
        """Decide one request for the subject of ``subject_token``. Never raises."""
        try:
            ctx = self.subject(subject_token)
        except IdentityError as exc:
            return self._refuse_unverified(request, f"subject token rejected: {exc}")
        return self.evaluate_for(ctx, request)

    def evaluate_many(
        self,
        subject_token: str,
        requests: Sequence[AccessRequest],
        semantic: EvaluationsSemantic = EvaluationsSemantic.EXECUTE_ALL,
    ) -> list[AccessDecision]:
        """Decide a batch; the short-circuit semantics stop after the deciding evaluation."""
        try:
            ctx = self.subject(subject_token)
        except IdentityError as exc:
            reason = f"subject token rejected: {exc}"
            ctx = None
        decisions: list[AccessDecision] = []
        for request in requests:
            if ctx is None:
                decision = self._refuse_unverified(request, reason)
            else:
                decision = self.evaluate_for(ctx, request)
            decisions.append(decision)
            match semantic:
                case EvaluationsSemantic.EXECUTE_ALL:
                    pass
                case EvaluationsSemantic.DENY_ON_FIRST_DENY:
                    if not decision.allowed:
                        break
                case EvaluationsSemantic.PERMIT_ON_FIRST_PERMIT:
                    if decision.allowed:
                        break
                case _:
                    assert_never(semantic)
        return decisions

    def evaluate_for(self, ctx: TrustedContext, request: AccessRequest) -> AccessDecision:
        """Decide one request for an already verified context. Never raises."""
        resource_text = f"{request.resource_type}::{request.resource_id!r}"
        forged = self._forged_subject(ctx, request)
        if forged is not None:
            return self._refuse(ctx.uid_text, request.action, resource_text, forged)
        try:
            qualified = self._qualify(ctx, request.resource_type)
            entity = self._resource(qualified, request)
            context = _scalars(request.context, "context")
        except PolicyError as exc:
            return self._refuse(ctx.uid_text, request.action, resource_text, str(exc))
        try:
            decision = self._authorizer.check(ctx, request.action, entity, context=context)
        except (PolicyError, StoreError) as exc:
            return self._refuse(ctx.uid_text, request.action, str(entity.uid), str(exc))
        return AccessDecision(decision.allowed, decision.reason, decision.policy_ids)

    def residual_filter(
        self, subject_token: str, action: str, resource_type: str, *, subject_id: str | None = None
    ) -> ResidualFilter:
        """The policy's filter over ``resource_type`` for the token's subject.

        A rejected token, an engine error or an untranslatable residual is ``Const(False)``:
        the app then shows nothing, never everything. So is a ``subject_id`` (the request
        body's claim) that is not the verified token's subject.
        """
        try:
            ctx = self.subject(subject_token)
        except IdentityError as exc:
            self._refuse(UNVERIFIED_SUBJECT, action, f"{resource_type}::*", str(exc))
            return ResidualFilter(Const(value=False))
        if subject_id is not None and subject_id != ctx.principal.subject:
            reason = "the request's subject.id is not the verified subject token's subject"
            self._refuse(ctx.uid_text, action, f"{resource_type}::*", reason)
            return ResidualFilter(Const(value=False))
        try:
            qualified = self._qualify(ctx, resource_type)
        except PolicyError as exc:
            self._refuse(ctx.uid_text, action, f"{resource_type}::*", str(exc))
            return ResidualFilter(Const(value=False))
        short = qualified.removeprefix(f"{ctx.domain.namespace}::")
        node = simplify(self._authorizer.resource_filter(ctx, action, short))
        return ResidualFilter(node)

    def _forged_subject(self, ctx: TrustedContext, request: AccessRequest) -> str | None:
        if request.subject_id != ctx.principal.subject:
            return "the request's subject.id is not the verified subject token's subject"
        if request.subject_type is not None and request.subject_type not in {
            ctx.domain.user_type,
            ctx.domain.entity_type(ctx.domain.user_type),
        }:
            return "the request's subject.type is not the verified subject's entity type"
        if request.subject_properties:
            return "subject properties come only from the verified token, not the request"
        return None

    @staticmethod
    def _qualify(ctx: TrustedContext, resource_type: str) -> str:
        if "::" not in resource_type:
            return ctx.domain.entity_type(resource_type)
        if resource_type.rsplit("::", 1)[0] != ctx.domain.namespace:
            msg = f"resource type {resource_type!r} is outside namespace {ctx.domain.namespace}"
            raise PolicyError(msg)
        return resource_type

    def _resource(self, qualified: str, request: AccessRequest) -> Entity:
        if not request.resource_id:
            raise PolicyError("resource.id is empty")
        if self._resolver is not None:
            # The source system's attributes, never the caller's (existence stays hidden:
            # an unknown id is the same deny as a forbidden one, to the end user).
            entity = self._resolver(qualified, request.resource_id)
            if entity is None:
                raise PolicyError("no such resource")
            return entity
        attrs = {
            k: frozenset(v) if isinstance(v, list) else v
            for k, v in _scalars(
                request.resource_properties, "resource.properties", sets=True
            ).items()
        }
        return Entity(EntityUid(qualified, request.resource_id), attrs)

    def _refuse_unverified(self, request: AccessRequest, reason: str) -> AccessDecision:
        resource = f"{request.resource_type}::{request.resource_id!r}"
        return self._refuse(UNVERIFIED_SUBJECT, request.action, resource, reason)

    def _refuse(self, principal: str, action: str, resource: str, reason: str) -> AccessDecision:
        # A refusal that cannot be audited is still a refusal.
        with contextlib.suppress(StoreError):
            self._authorizer.audit.record(
                principal=principal,
                action=action,
                resource=resource,
                decision="deny",
                policy_ids=(),
                reason=reason,
            )
        return AccessDecision(allowed=False, reason=reason)


def _scalars(values: Mapping[str, Any], where: str, *, sets: bool = False) -> dict[str, Any]:
    """``values`` if it holds only Cedar scalars (and, with ``sets``, lists of them).

    Raises:
        PolicyError: another value (records and entity references are not supported).
    """
    for key, value in values.items():
        if _scalar(value):
            continue
        if sets and isinstance(value, list) and all(_scalar(v) for v in value):
            continue
        msg = f"{where}.{key}: only strings, integers and booleans are supported"
        raise PolicyError(msg)
    return dict(values)


def _scalar(value: object) -> bool:
    return isinstance(value, str | bool) or (isinstance(value, int) and -(2**63) <= value < 2**63)
