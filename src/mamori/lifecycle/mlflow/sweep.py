"""Reconcile the registry with the store, and enforce protected aliases after the fact.

MLflow delivers webhooks fire-and-forget (at most ``MLFLOW_WEBHOOK_REQUEST_MAX_RETRIES`` = 3
retries, no outbox), and stage transitions, renames and deletes send no event at all. So the
sweep lists the registry, resolves every version the store has not bound (or bound to another
registry object: a rename or a delete and re-create changes the identity), re-hashes the
versions that hold a protected alias or stage, and checks each of those targets against the
gate. mamori stays correct when every webhook is lost.

Where MLflow 3 really reports things (checked against its REST API and SQL store):

- ``search_model_versions`` returns every alias list empty ("may not have aliases populated
  for performance reasons"); ``search_registered_models`` returns each model's aliases.
- Both searches leave out prompts: a registered model tagged ``mlflow.prompt.is_prompt=true``
  is missing from ``search_registered_models``, and one version tagged so removes *every*
  version of its model from ``search_model_versions``. Any EDIT user can set either tag. So
  each search runs twice (normal, and filtered on that tag), and the versions of a model that
  the version search hides are read one by one, up to the highest version number seen.

Enforcement (:class:`AliasGuard`) is the defence in depth for servers without the gate plugin:
a protected alias on a version mamori does not allow raises an ``alert`` audit record and, when
``mlflow_remove_unapproved_alias`` is on, is deleted (needs MANAGE on the model).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import structlog
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from mamori.lifecycle.mlflow.gate import (
    MLFLOW_PRINCIPAL,
    PRODUCTION_STAGE,
    SOURCE,
    decide_promotion,
    is_protected,
)
from mamori.lifecycle.mlflow.identity import RegistryFacts, VersionIdentity
from mamori.lifecycle.mlflow.resolve import registry_of
from mamori.lifecycle.service import Lifecycle
from mamori.store.db import audit_append
from mamori.store.models import ArtifactRow, ArtifactState, BindingRow
from mamori.store.models_mlflow import MlflowVersionRow, VersionStatus

__all__ = [
    "VERDICT_TAG",
    "AliasGuard",
    "SweepPlan",
    "Target",
    "mirror_verdicts",
    "plan_sweep",
    "verdict_of",
]

_log = structlog.get_logger("mamori.mlflow")

VERDICT_TAG: Final = "mamori.verdict"
"""The tag mamori writes for visibility. No decision ever reads it back: anyone with EDIT
permission on the model can set any tag."""
_PAGE: Final = 1000
_PROMPTS: Final = "tags.`mlflow.prompt.is_prompt` = 'true'"
_NOT_FOUND: Final = "RESOURCE_DOES_NOT_EXIST"
_MAX_PROBED: Final = 10_000
"""Version numbers read one by one per hidden model before the sweep gives up on it."""


@dataclass(frozen=True, slots=True)
class Target:
    """A protected alias (or the Production stage) and the version it points at."""

    name: str
    version: str
    target: str


@dataclass(frozen=True, slots=True)
class SweepPlan:
    """What one pass over the registry found."""

    versions: int
    to_resolve: tuple[tuple[str, str], ...]
    protected: tuple[Target, ...]
    seen: frozenset[tuple[str, str]] = field(default_factory=frozenset)


def _pages(search: Callable[..., Any], filter_string: str | None) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = search(filter_string=filter_string, max_results=_PAGE, page_token=token)
        yield from page
        token = page.token
        if not token:
            return


def _registry_versions(registry: Any) -> tuple[dict[tuple[str, str], Any], dict[str, Any]]:
    """Every model version and every registered model, prompt-tagged ones included."""
    plain = list(_pages(registry.search_model_versions, None))
    tagged = list(_pages(registry.search_model_versions, _PROMPTS))
    versions = {(mv.name, str(mv.version)): mv for mv in [*plain, *tagged]}
    models = {
        rm.name: rm
        for where in (None, _PROMPTS)
        for rm in _pages(registry.search_registered_models, where)
    }
    # One prompt-tagged version hides every version of its model from the plain search, and
    # the filtered search returns only the tagged ones: read the others one by one.
    unhidden = {mv.name for mv in plain}
    for name, rm in models.items():
        if name in unhidden:
            continue
        numbers = [int(mv.version) for mv in rm.latest_versions or []]
        numbers += [int(v) for v in (rm.aliases or {}).values()]
        numbers += [int(v) for n, v in versions if n == name]
        for number in range(1, min(max(numbers, default=0), _MAX_PROBED) + 1):
            key = (name, str(number))
            if key in versions:
                continue
            try:
                versions[key] = registry.get_model_version(name, str(number))
            except MlflowException as exc:
                if exc.error_code != _NOT_FOUND:
                    raise
    return versions, models


def plan_sweep(
    lifecycle: Lifecycle,
    client: MlflowClient,
    protected: tuple[str, ...],
    *,
    rescan: bool = False,
) -> SweepPlan:
    """List the registry; name versions to (re)resolve and protected targets to check.

    A version is (re)resolved when it was never bound, when the registry now holds another
    object under its name and number, when drift was recorded for it, or on ``rescan``.
    """
    with lifecycle.store.read() as session:
        bound = {
            (row.name, row.version): row
            for row in session.execute(
                select(MlflowVersionRow).where(MlflowVersionRow.status == VersionStatus.RESOLVED)
            ).scalars()
        }
        known = {
            key: (None if r.identity is None else VersionIdentity.from_json(r.identity), r.drift)
            for key, r in bound.items()
        }
    versions, models = _registry_versions(registry_of(client))
    to_resolve: list[tuple[str, str]] = []
    targets: list[Target] = []
    for key, mv in sorted(versions.items()):
        identity, drift = known.get(key, (None, ""))
        if rescan or identity is None or drift or identity != VersionIdentity.of(mv):
            to_resolve.append(key)
        if (mv.current_stage or "").casefold() == PRODUCTION_STAGE.casefold():
            targets.append(Target(key[0], key[1], PRODUCTION_STAGE))
    for name, rm in sorted(models.items()):
        targets.extend(
            Target(name, str(version), alias)
            for alias, version in sorted((rm.aliases or {}).items())
            if is_protected(alias, protected)
        )
    seen = frozenset(versions)
    return SweepPlan(len(seen), tuple(to_resolve), tuple(targets), seen)


class AliasGuard:
    """Checks a protected alias or stage after the fact; alerts, and removes it when told to."""

    def __init__(
        self,
        lifecycle: Lifecycle,
        client: MlflowClient,
        *,
        protected: tuple[str, ...],
        remove: bool,
        facts: Callable[[str, str], RegistryFacts | str],
    ) -> None:
        """Enforce ``protected`` aliases; delete unapproved ones when ``remove``.

        ``facts`` reads a version's current identity and artifact listing.
        """
        self.lifecycle = lifecycle
        self.client = client
        self.registry = registry_of(client)
        self.protected = protected
        self.remove = remove
        self.facts = facts

    def check(self, target: Target, *, origin: str) -> bool:
        """True when the target may stay; otherwise alert (once) and maybe remove it."""
        if target.target != PRODUCTION_STAGE and not is_protected(target.target, self.protected):
            return True
        current = self.facts(target.name, target.version)
        if isinstance(current, str):
            allowed, reason = False, current
        else:
            decision = decide_promotion(
                self.lifecycle,
                name=target.name,
                version=target.version,
                target=target.target,
                actor=f"mamori-{origin}",
                current=current,
                audit=False,
            )
            allowed, reason = decision.allowed, decision.reason
        if allowed:
            return True
        removed = self._remove(target) if self.remove else ""
        self._alert(target, reason, removed, origin)
        return False

    def _remove(self, target: Target) -> str:
        try:
            if target.target == PRODUCTION_STAGE:
                return self._archive(target)
            # The registry client, not MlflowClient: the latter refuses prompt-tagged models.
            current = self.registry.get_model_version_by_alias(target.name, target.target)
            if str(current.version) != target.version:
                return "moved"  # someone re-pointed it meanwhile; the next check judges that
            self.registry.delete_registered_model_alias(target.name, target.target)
        except MlflowException as exc:
            return f"failed: {exc.message[:200]}"
        return "removed"

    def _archive(self, target: Target) -> str:
        current = self.registry.get_model_version(target.name, target.version)
        if (current.current_stage or "").casefold() != PRODUCTION_STAGE.casefold():
            return "moved"
        with warnings.catch_warnings():
            # Stages are deprecated in MLflow 3 (FutureWarning) yet still what older
            # deployments promote with, so a Production stage is taken away like an alias.
            warnings.simplefilter("ignore", FutureWarning)
            self.registry.transition_model_version_stage(target.name, target.version, "Archived")
        return "removed"

    def _alert(self, target: Target, reason: str, removed: str, origin: str) -> None:
        resource = f"{SOURCE}:{target.name}/{target.version}@{target.target}"
        what = "stage" if target.target == PRODUCTION_STAGE else "alias"
        outcome = "archived" if what == "stage" and removed == "removed" else removed
        text = f"{reason}; {what} {outcome or 'kept (policy)'}"
        with self.lifecycle.store.write() as session:
            row = _version_row(session, target.name, target.version)
            if removed != "removed" and row is not None and row.last_alert == text:
                return  # the same alert was raised by an earlier run; do not repeat it
            if row is not None:
                row.last_alert = text
            if removed == "removed":
                audit_append(
                    session,
                    principal=MLFLOW_PRINCIPAL,
                    action=f"mlflow-{what}-removed",
                    resource=resource,
                    decision="removed",
                    policy_ids=("mamori-gate",),
                    reason=f"{origin}: {reason}",
                )
            audit_append(
                session,
                principal=MLFLOW_PRINCIPAL,
                action="alert",
                resource=resource,
                decision="not-deployable",
                policy_ids=("mamori-gate",),
                reason=f"{origin}: {text}",
            )
        _log.warning("mlflow_alert", resource=resource, reason=text, origin=origin)


def _version_row(session: Session, name: str, version: str) -> MlflowVersionRow | None:
    return session.execute(
        select(MlflowVersionRow).where(
            MlflowVersionRow.name == name, MlflowVersionRow.version == version
        )
    ).scalar()


def verdict_of(lifecycle: Lifecycle, name: str, version: str) -> str:
    """A one-word summary for the mirror tag: approved, unsafe, rejected, safe or pending."""
    if lifecycle.gate_binding(SOURCE, name, version).allowed:
        return "approved"
    with lifecycle.store.read() as session:
        states = {
            state
            for (state,) in session.execute(
                select(ArtifactRow.state)
                .join(BindingRow, BindingRow.artifact_id == ArtifactRow.id)
                .where(
                    BindingRow.source == SOURCE,
                    BindingRow.name == name,
                    BindingRow.version == version,
                )
            )
        }
    for state, word in (
        (ArtifactState.UNSAFE, "unsafe"),
        (ArtifactState.REJECTED, "rejected"),
        (ArtifactState.QUARANTINED, "pending"),
    ):
        if state in states:
            return word
    return "safe" if states else "pending"


def mirror_verdicts(
    lifecycle: Lifecycle,
    client: MlflowClient,
    versions: frozenset[tuple[str, str]],
    *,
    write: Callable[[str, str, str], None] | None = None,
) -> int:
    """Write ``mamori.verdict`` tags that changed since the last run; return how many."""
    written = 0
    with lifecycle.store.read() as session:
        last = {
            (r.name, r.version): r.mirrored
            for r in session.execute(select(MlflowVersionRow)).scalars()
            if r.status is VersionStatus.RESOLVED
        }
    setter = write or (lambda n, v, value: client.set_model_version_tag(n, v, VERDICT_TAG, value))
    for key in sorted(versions & last.keys()):
        word = verdict_of(lifecycle, *key)
        if word == last[key]:
            continue
        try:
            setter(key[0], key[1], word)
        except MlflowException as exc:
            _log.warning("mlflow_tag_mirror", name=key[0], version=key[1], error=exc.message)
            continue
        with lifecycle.store.write() as session:
            row = _version_row(session, *key)
            if row is not None:
                row.mirrored = word
                row.updated_at = datetime.now(UTC)
        written += 1
    return written
