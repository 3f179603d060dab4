"""Promotion decisions for MLflow: may this version take this protected alias (or stage)?

The answer comes from mamori's store and the registry's current facts: the version must still
be the registry object mamori bound (:class:`~mamori.lifecycle.mlflow.identity.VersionIdentity`:
a rename or a delete and re-create is a different object), its current artifact listing must
match the bound manifest, and every bound artifact must be deployable
(:meth:`Lifecycle.gate_binding`). A mismatch is recorded as *drift*: the version stays
undeployable until it is resolved again (a rescan). Registry tags are never read.

An admin may grant a *break-glass* exception for one exact name/version/alias, with MFA and a
written reason, for a limited time; granting and every use of it are audited. It overrides a
verdict, never a drift: the grant was made for the object and bytes the admin looked at, so it
records the binding in place then and applies only while that same binding is in place.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from sqlalchemy import select

from mamori.errors import AccessDeniedError, ConfigError
from mamori.identity.principal import Principal
from mamori.lifecycle.authz import Action, has_mfa
from mamori.lifecycle.mlflow.identity import (
    ManifestEntry,
    RegistryFacts,
    VersionIdentity,
    listing_difference,
)
from mamori.lifecycle.service import Lifecycle
from mamori.store.db import audit_append
from mamori.store.models_mlflow import BreakGlassRow, MlflowVersionRow, VersionStatus

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
    "registry_mismatch",
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


def _bound(row: MlflowVersionRow | None) -> dict[str, Any] | None:
    """The identity and manifest bound now (``None`` when the version is not bound)."""
    if row is None or row.status is not VersionStatus.RESOLVED:
        return None
    if row.identity is None or row.manifest is None:
        return None
    return {"identity": row.identity, "manifest": row.manifest}


def registry_mismatch(row: MlflowVersionRow | None, current: RegistryFacts | None) -> str:
    """Why the registry no longer holds what was bound ("" when it does, or nothing was)."""
    if row is None or row.status is not VersionStatus.RESOLVED:
        # Nothing bound now: the verdict check denies (a break-glass grant may allow).
        return ""
    if row.drift:
        return f"undeployable until rescanned: {row.drift}"
    if row.identity is None or row.manifest is None:
        return "bound before registry identities were recorded; undeployable until rescanned"
    if current is None:
        return "the registry's current identity and listing were not supplied; failing closed"
    changed = VersionIdentity.from_json(row.identity).difference(current.identity)
    if changed:
        return changed
    return listing_difference([ManifestEntry.from_json(e) for e in row.manifest], current)


def decide_promotion(
    lifecycle: Lifecycle,
    *,
    name: str,
    version: str,
    target: str,
    actor: str,
    current: RegistryFacts | None,
    audit: bool = True,
) -> PromotionDecision:
    """Decide whether ``name``/``version`` may take ``target`` (an alias or ``Production``).

    ``current`` is what the registry holds now (identity and artifact listing). Allowed when
    it matches the binding and every bound artifact is deployable, or, when only the verdict
    says no, an unexpired break-glass grant names exactly this version and target. Each
    decision is audited with the MLflow user that asked; a mismatch is recorded as drift.
    """
    result = lifecycle.gate_binding(SOURCE, name, version, Action.DEPLOY)
    allowed, reason = result.allowed, result.reason
    resource = f"{SOURCE}:{name}/{version}@{target}"
    with lifecycle.store.write() as session:
        row = session.execute(
            select(MlflowVersionRow).where(
                MlflowVersionRow.name == name, MlflowVersionRow.version == version
            )
        ).scalar()
        if row is not None and row.status is not VersionStatus.RESOLVED and allowed:
            # Old bindings of a version mamori could no longer bind (gone, unreadable) must
            # not vouch for whatever the registry holds under its name now.
            allowed = False
            reason = f"{SOURCE}:{name}/{version} could not be bound again: {row.error or ''}"
        decision = PromotionDecision(allowed=allowed, reason=reason)
        mismatch = registry_mismatch(row, current)
        if mismatch:
            decision = PromotionDecision(allowed=False, reason=mismatch)
            if row is not None and current is not None and not row.drift and row.identity:
                row.drift = mismatch
                audit_append(
                    session,
                    principal=MLFLOW_PRINCIPAL,
                    action="mlflow-drift",
                    resource=f"{SOURCE}:{name}/{version}",
                    decision="not-deployable",
                    policy_ids=("mamori-gate",),
                    reason=f"promotion check: {mismatch}; undeployable until rescanned",
                )
        elif not allowed:
            bound_now = _bound(row)
            grant = next(
                (
                    g
                    for g in session.execute(
                        select(BreakGlassRow)
                        .where(
                            BreakGlassRow.name == name,
                            BreakGlassRow.version == version,
                            BreakGlassRow.alias == target.strip().casefold(),
                            BreakGlassRow.expires_at > _now(),
                        )
                        .order_by(BreakGlassRow.id.desc())
                    ).scalars()
                    # Only for the object and bytes the admin granted it for: after a rename
                    # swap or a delete and re-register the name is rebound to other bytes.
                    if g.binding == bound_now
                ),
                None,
            )
            if grant is not None:
                decision = PromotionDecision(
                    allowed=True,
                    reason=(
                        f"break-glass #{grant.id} by {grant.granted_by} until "
                        f"{_aware(grant.expires_at).isoformat()}: {grant.reason} "
                        f"(the gate alone would deny: {reason})"
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
        bound = _bound(
            session.execute(
                select(MlflowVersionRow).where(
                    MlflowVersionRow.name == name, MlflowVersionRow.version == version
                )
            ).scalar()
        )
        row = BreakGlassRow(
            binding=bound,
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
