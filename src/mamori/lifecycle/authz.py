"""Lifecycle authorization: Cedar decides, every decision is audited with its policy ids."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from sqlalchemy.orm import Session

from mamori.errors import AccessDeniedError, PolicyError
from mamori.identity.principal import Principal
from mamori.identity.subjects import SubjectRules
from mamori.policy.engine import Decision, Effect, Entity, EntityUid, PolicyEngine, Request
from mamori.store.db import audit_append

__all__ = ["LIFECYCLE_ROLES", "Action", "ArtifactFacts", "LifecycleAuthorizer", "has_mfa"]

#: The roles the packaged lifecycle policies name (a custom policy directory may add more
#: through ``[identity.roles]``).
LIFECYCLE_ROLES: frozenset[str] = frozenset({"viewer", "importer", "approver", "deployer", "admin"})


class Action(enum.StrEnum):
    """The lifecycle actions the policies know."""

    VIEW = "view"
    SCAN = "scan"
    IMPORT = "import"
    APPROVE = "approve"
    REJECT = "reject"
    OVERRIDE = "override"
    DEPLOY = "deploy"
    INVOKE = "invoke"
    ADMIN = "admin"


@dataclass(frozen=True, slots=True)
class ArtifactFacts:
    """What the policies may know about an artifact: all of it from mamori's own store."""

    sha256: str
    imported_by: str
    state: str
    verdict: str
    deployable: bool
    imported_by_issuer: str = ""
    """The importer's issuer; ``""`` (unknown) counts as the asking principal's issuer."""


def has_mfa(principal: Principal) -> bool:
    """True when the verified token asserted multi-factor authentication."""
    return principal.attributes.get("mfa") == "true"


class LifecycleAuthorizer:
    """Asks Cedar, writes the decision to the audit chain, raises on deny.

    Cedar sees people, not strings: ``principal.subject`` and ``resource.imported_by`` are
    both :meth:`SubjectRules.person` keys (``issuer|NFKC-casefolded subject``), so the
    four-eyes policy's ``resource.imported_by == principal.subject`` holds for ``Ivan``
    approving what ``ivan`` of the same issuer imported, and never across issuers.
    """

    def __init__(self, engine: PolicyEngine, *, subjects: SubjectRules | None = None) -> None:
        """Use ``engine`` (normally ``PolicyEngine.packaged("lifecycle")``) and ``subjects``."""
        self.engine = engine
        self.subjects = subjects or SubjectRules()

    def decide(
        self,
        principal: Principal,
        action: Action,
        artifact: ArtifactFacts | None,
        *,
        reason: str = "",
    ) -> Decision:
        """The policy decision, without side effects. Engine errors are a deny."""
        user = EntityUid("Mamori::User", f"{principal.issuer}|{principal.subject}")
        roles = tuple(EntityUid("Mamori::Role", r) for r in sorted(principal.roles))
        person = self.subjects.person(principal.issuer, principal.subject)
        entities = [Entity(user, {"subject": person}, roles)]
        entities += [Entity(r) for r in roles]
        if artifact is None:
            resource = EntityUid("Mamori::System", "mamori")
            entities.append(Entity(resource))
        else:
            resource = EntityUid("Mamori::Artifact", artifact.sha256)
            entities.append(
                Entity(
                    resource,
                    {
                        "sha256": artifact.sha256,
                        "imported_by": self.subjects.person(
                            artifact.imported_by_issuer or principal.issuer, artifact.imported_by
                        ),
                        "state": artifact.state,
                        "verdict": artifact.verdict,
                        "deployable": artifact.deployable,
                    },
                )
            )
        request = Request(
            user,
            EntityUid("Mamori::Action", action.value),
            resource,
            {"mfa": has_mfa(principal), "reason": reason},
        )
        try:
            return self.engine.decide(request, entities)
        except PolicyError as exc:
            return Decision(Effect.DENY, (), f"policy engine error: {exc.diagnostics()}")

    def require(
        self,
        session: Session,
        principal: Principal,
        action: Action,
        artifact: ArtifactFacts | None,
        *,
        reason: str = "",
    ) -> Decision:
        """Decide and audit in ``session``; raise :class:`AccessDeniedError` on deny.

        The audit record of a deny must survive the caller's rollback, so callers audit denies
        in a transaction of their own (see :meth:`mamori.lifecycle.Lifecycle._authorize`).
        """
        decision = self.decide(principal, action, artifact, reason=reason)
        audit_append(
            session,
            principal=f"{principal.issuer}|{principal.subject}",
            action=action.value,
            resource=artifact.sha256 if artifact else "mamori",
            decision=decision.effect.value,
            policy_ids=decision.policy_ids,
            reason=decision.reason if not reason else f"{decision.reason}; {reason}",
        )
        if not decision.allowed:
            msg = f"{action.value} denied: {decision.reason}"
            raise AccessDeniedError(msg, policy_ids=decision.policy_ids)
        return decision
