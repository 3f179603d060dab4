"""Build the lifecycle object graph from :class:`mamori.config.Settings`.

The API process and every worker process call :func:`build_lifecycle`, so they agree on the
store, the quarantine directory, the policies and the scan policy.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

from mamori.config import Settings
from mamori.identity.subjects import SubjectRules
from mamori.lifecycle.authz import LifecycleAuthorizer
from mamori.lifecycle.blobs import BlobStore
from mamori.lifecycle.service import Lifecycle
from mamori.policy.engine import PolicyEngine
from mamori.scan.policy import ScanPolicy
from mamori.store.db import Store

__all__ = ["build_lifecycle", "load_lifecycle_policies", "load_scan_policy"]


def load_lifecycle_policies(settings: Settings) -> PolicyEngine:
    """The shipped lifecycle policies, or the operator's from ``settings.policy_dir``."""
    if settings.policy_dir is None:
        return PolicyEngine.packaged("lifecycle")
    return PolicyEngine.from_files(
        settings.policy_dir / "lifecycle.cedar", settings.policy_dir / "lifecycle.cedarschema"
    )


def load_scan_policy(settings: Settings) -> ScanPolicy:
    """The scan policy file named by ``settings.scan_policy``, or the defaults."""
    if settings.scan_policy is None:
        return ScanPolicy()
    from mamori.scan.policy_file import load_policy  # noqa: PLC0415 - only when configured

    return load_policy(settings.scan_policy)


def build_lifecycle(
    settings: Settings,
    *,
    enqueue: Callable[[str], None] | None = None,
    migrate: bool = True,
) -> Lifecycle:
    """Open the store (migrating it when asked) and wire a :class:`Lifecycle`."""
    store = Store(settings.resolved_database_url)
    if migrate:
        store.migrate()
    blobs = BlobStore(settings.blob_dir)
    blobs.remove_orphans()  # leftovers of crashed writers (see BlobStore.remove_orphans)
    return Lifecycle(
        store,
        blobs,
        LifecycleAuthorizer(
            load_lifecycle_policies(settings),
            subjects=SubjectRules(frozenset(settings.identity.case_sensitive_issuers)),
        ),
        scan_policy=load_scan_policy(settings),
        enqueue=enqueue,
        stale_after=timedelta(seconds=settings.scan_stale_seconds),
    )
