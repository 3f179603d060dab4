"""Promotion decisions for MLflow: may this version take this protected alias (or stage)?

The answer comes only from mamori's store: every artifact bound to the version must be
deployable (:meth:`Lifecycle.gate_binding`). Registry tags are never read. An admin may grant
a *break-glass* exception for one exact name/version/alias, with MFA and a written reason,
for a limited time; granting and every use of it are audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from sqlalchemy import select

from mamori.errors import AccessDeniedError, ConfigError
from mamori.identity.principal import Principal
from mamori.lifecycle.authz import Action, has_mfa
from mamori.lifecycle.service import Lifecycle
from mamori.store.db import audit_append
from mamori.store.models_mlflow import BreakGlassRow

__all__ = [
    "MAX_BREAK_GLASS",
    "MLFLOW_PRINCIPAL",
    "PRODUCTION_STAGE",
    "SOURCE",
    "BreakGlass",
    "PromotionDecision",
    "decide_promotion",
    "grant_break_glass",
    "is_protected",
]

SOURCE: Final = "mlflow"
"""The binding ``source`` of every MLflow artifact."""
MLFLOW_PRINCIPAL: Final = "mamori|mlflow"
"""How the integration itself appears in the audit log."""
PRODUCTION_STAGE: Final = "Production"
"""The legacy stage gated like a protected alias (MLflow's canonical spelling)."""
MAX_BREAK_GLASS: Final = timedelta(hours=24)
_MFA_POLICY: Final = "mlflow-break-glass-mfa"


def _now() -> datetime:
    return datetime.now(UTC)


def _aware(moment: datetime) -> datetime:
    # SQLite returns naive datetimes for timezone-aware columns; they were written in UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def is_protected(alias: str, protected: tuple[str, ...]) -> bool:
    """True when ``alias`` is one of ``protected`` (case-insensitively, as users type them)."""
    folded = alias.strip().casefold()
    return any(folded == p.strip().casefold() for p in protected)


@dataclass(frozen=True, slots=True)
class PromotionDecision:
    """The gate's answer for one promotion."""

    allowed: bool
    reason: str
    break_glass: bool = False


@dataclass(frozen=True, slots=True)
class BreakGlass:
    """A granted exception."""

    id: int
    name: str
    version: str
    alias: str
    expires_at: datetime


def decide_promotion(
    lifecycle: Lifecycle,
    *,
    name: str,
    version: str,
    target: str,
    actor: str,
    audit: bool = True,
) -> PromotionDecision:
    """Decide whether ``name``/``version`` may take ``target`` (an alias or ``Production``).

    Allowed when every bound artifact is deployable, or an unexpired break-glass grant names
    exactly this version and target. Each decision is audited with the MLflow user that asked.
    """
    result = lifecycle.gate_binding(SOURCE, name, version, Action.DEPLOY)
    decision = PromotionDecision(allowed=result.allowed, reason=result.reason)
    resource = f"{SOURCE}:{name}/{version}@{target}"
    with lifecycle.store.write() as session:
        if not result.allowed:
            grant = session.execute(
                select(BreakGlassRow)
                .where(
                    BreakGlassRow.name == name,
                    BreakGlassRow.version == version,
                    BreakGlassRow.alias == target.strip().casefold(),
                    BreakGlassRow.expires_at > _now(),
                )
                .order_by(BreakGlassRow.id.desc())
                .limit(1)
            ).scalar()
            if grant is not None:
                decision = PromotionDecision(
                    allowed=True,
                    reason=(
                        f"break-glass #{grant.id} by {grant.granted_by} until "
                        f"{_aware(grant.expires_at).isoformat()}: {grant.reason} "
                        f"(the gate alone would deny: {result.reason})"
                    ),
                    break_glass=True,
                )
        if audit or decision.break_glass:
            audit_append(
                session,
                principal=f"mlflow|{actor}",
                action="mlflow-break-glass-use" if decision.break_glass else "mlflow-promote",
                resource=resource,
                decision="allow" if decision.allowed else "deny",
                policy_ids=("mamori-gate",),
                reason=decision.reason,
            )
    return decision


def grant_break_glass(
    lifecycle: Lifecycle,
    principal: Principal,
    *,
    name: str,
    version: str,
    alias: str,
    reason: str,
    duration: timedelta,
) -> BreakGlass:
    """Record an exception: Cedar must allow ``admin``, with MFA and a written reason.

    The lifecycle schema has no registry-version resource type, so the MFA rule is enforced
    here and audited like a policy deny.
    """
    if not reason.strip():
        raise ConfigError("reason: a break-glass grant needs a written reason")
    if not timedelta(0) < duration <= MAX_BREAK_GLASS:
        msg = f"duration: must be positive and at most {MAX_BREAK_GLASS}"
        raise ConfigError(msg)
    who = f"{principal.issuer}|{principal.subject}"
    # Decided and audited in its own transaction so a deny is recorded too.
    denied: AccessDeniedError | None = None
    with lifecycle.store.write() as session:
        try:
            decision = lifecycle.authz.require(
                session, principal, Action.ADMIN, None, reason=reason
            )
        except AccessDeniedError as exc:
            denied = exc
        else:
            if not has_mfa(principal):
                denied = AccessDeniedError(
                    "break-glass needs a token with MFA", policy_ids=(_MFA_POLICY,)
                )
                audit_append(
                    session,
                    principal=who,
                    action="mlflow-break-glass",
                    resource=f"{SOURCE}:{name}/{version}@{alias}",
                    decision="deny",
                    policy_ids=(_MFA_POLICY,),
                    reason=str(denied),
                )
    if denied is not None:
        raise denied
    now = _now()
    with lifecycle.store.write() as session:
        row = BreakGlassRow(
            name=name,
            version=version,
            alias=alias.strip().casefold(),
            reason=reason.strip(),
            granted_by=who,
            created_at=now,
            expires_at=now + duration,
        )
        session.add(row)
        session.flush()
        audit_append(
            session,
            principal=who,
            action="mlflow-break-glass",
            resource=f"{SOURCE}:{name}/{version}@{row.alias}",
            decision="granted",
            policy_ids=decision.policy_ids,
            reason=f"until {row.expires_at.isoformat()}: {row.reason}",
        )
        return BreakGlass(row.id, name, version, row.alias, row.expires_at)
