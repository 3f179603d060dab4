"""The lifecycle's tasks on the job queue: scan one artifact, and reconcile everything pending.

The queue is only a doorbell. Huey removes a message before running it, so a worker killed
with ``kill -9`` loses that message; the store still holds the artifact without a finished
scan, and the periodic ``reconcile`` task (also run when a worker starts) rings again. A
duplicated message is harmless too: :meth:`Lifecycle.run_scan` claims the (artifact,
ruleset) row first, so at most one verdict is ever written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import cast

from huey.api import Huey, TaskWrapper

from mamori.config import Settings
from mamori.jobs import cron_schedule, make_huey
from mamori.lifecycle.factory import build_lifecycle
from mamori.lifecycle.service import Lifecycle

__all__ = ["JobQueue", "enqueue_scan", "make_queue"]


@dataclass(frozen=True, slots=True)
class JobQueue:
    """A Huey instance with the lifecycle's tasks registered on it."""

    huey: Huey
    scan: TaskWrapper
    reconcile: TaskWrapper
    settings: Settings
    _lifecycles: dict[int, Lifecycle] = field(default_factory=dict)

    def lifecycle(self) -> Lifecycle:
        """This process's lifecycle (built on first use, again after a fork)."""
        # Keyed by pid: Huey's process workers fork, and a forked SQLAlchemy pool must not
        # be shared with the parent.
        pid = os.getpid()
        lifecycle = self._lifecycles.get(pid)
        if lifecycle is None:
            lifecycle = build_lifecycle(self.settings, enqueue=lambda sha: enqueue_scan(self, sha))
            self._lifecycles[pid] = lifecycle
        return lifecycle


def make_queue(settings: Settings, *, immediate: bool = False) -> JobQueue:
    """The queue for ``settings`` with the scan and reconcile tasks (and MLflow's, when set).

    ``immediate=True`` runs tasks synchronously in the caller (tests, single-process demos).
    """
    huey = make_huey(settings, immediate=immediate)
    holder: dict[str, JobQueue] = {}

    def scan(sha256: str) -> str | None:
        view = holder["queue"].lifecycle().run_scan(sha256)
        return None if view is None else view.status.value

    def reconcile() -> int:
        return _reconcile(holder["queue"])

    def on_start() -> None:
        _reconcile(holder["queue"])

    # Huey ships no type hints; registering by call keeps our functions typed.
    scan_task = cast("TaskWrapper", huey.task(name="mamori.scan", retries=2, retry_delay=5)(scan))
    reconcile_task = cast(
        "TaskWrapper",
        huey.periodic_task(
            cron_schedule(settings.reconcile_cron, "reconcile_cron"), name="mamori.reconcile"
        )(reconcile),
    )
    huey.on_startup(name="mamori.reconcile-on-start")(on_start)
    queue = JobQueue(huey=huey, scan=scan_task, reconcile=reconcile_task, settings=settings)
    holder["queue"] = queue
    if settings.mlflow_tracking_uri:
        from mamori.lifecycle.mlflow.tasks import register_mlflow_tasks  # noqa: PLC0415 - optional

        register_mlflow_tasks(queue, settings)
    return queue


def _reconcile(queue: JobQueue) -> int:
    pending = queue.lifecycle().pending_scans()
    for sha256 in pending:
        enqueue_scan(queue, sha256)
    return len(pending)


def enqueue_scan(queue: JobQueue, sha256: str) -> None:
    """Ask a worker to scan the artifact with this digest."""
    queue.scan(sha256)
