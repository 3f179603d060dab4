"""Huey tasks of the MLflow integration: process deliveries, resolve, sweep, rescan.

Call :func:`register_mlflow_tasks` once on the queue built by
:func:`mamori.lifecycle.queue.make_queue` (it does nothing unless ``mlflow_tracking_uri`` is
set). The API enqueues one ``mamori.mlflow.delivery`` task per accepted webhook delivery. The
periodic sweep enqueues one ``mamori.mlflow.resolve`` task per version to (re)resolve, so N
consumers share the work.
"""

from __future__ import annotations

import os
import weakref
from dataclasses import dataclass
from typing import Protocol, cast

from huey.api import Huey, TaskWrapper

from mamori.config import Settings
from mamori.jobs import cron_schedule
from mamori.lifecycle.mlflow.events import MlflowIntegration, SweepReport, build_integration
from mamori.lifecycle.mlflow.resolve import Resolution
from mamori.lifecycle.service import Lifecycle

__all__ = ["MlflowTasks", "register_mlflow_tasks"]


@dataclass(frozen=True, slots=True)
class MlflowTasks:
    """The registered tasks (call them to enqueue)."""

    process: TaskWrapper
    delivery: TaskWrapper
    resolve: TaskWrapper
    sweep: TaskWrapper
    rescan: TaskWrapper


class JobQueue(Protocol):
    """What the MLflow tasks need of the lifecycle's queue (``mamori.lifecycle.queue``).

    A protocol, not an import: ``lifecycle.queue`` registers these tasks, so importing it here
    would make the two modules a cycle.
    """

    @property
    def huey(self) -> Huey:
        """The Huey instance the tasks are registered on."""
        ...

    def lifecycle(self) -> Lifecycle:
        """This process's lifecycle."""
        ...


_CACHE: weakref.WeakKeyDictionary[Huey, dict[int, MlflowIntegration]] = weakref.WeakKeyDictionary()
_REGISTERED: weakref.WeakKeyDictionary[Huey, MlflowTasks] = weakref.WeakKeyDictionary()


def register_mlflow_tasks(queue: JobQueue, settings: Settings) -> MlflowTasks | None:
    """Add the MLflow tasks to ``queue``; ``None`` when no tracking URI is configured."""
    if not settings.mlflow_tracking_uri:
        return None
    # make_queue registers them already; Huey refuses a second task of the same name.
    registered = _REGISTERED.get(queue.huey)
    if registered is None:
        registered = _REGISTERED[queue.huey] = _register(queue, settings)
    return registered


def _register(queue: JobQueue, settings: Settings) -> MlflowTasks:
    holder: dict[str, MlflowTasks] = {}

    def integration() -> MlflowIntegration:
        # Per process: Huey's process workers fork, and clients and pools must not be shared.
        per_pid = _CACHE.setdefault(queue.huey, {})
        key = os.getpid()
        found = per_pid.get(key)
        if found is None:
            found = build_integration(settings, queue.lifecycle())
            per_pid[key] = found
        return found

    def process() -> int:
        return integration().process_pending()

    def delivery(delivery_id: str) -> None:
        integration().process(delivery_id)

    def resolve(name: str, version: str, force: bool = False) -> str:
        return integration().resolver.resolve(name, version, force=force).status.value

    def _enqueue(name: str, version: str, force: bool) -> Resolution | None:
        holder["tasks"].resolve(name, version, force)
        return None

    def _report(report: SweepReport) -> dict[str, int]:
        return {
            "versions": report.versions,
            "protected_denied": report.protected_denied,
            "tags_written": report.tags_written,
        }

    def sweep() -> dict[str, int]:
        return _report(integration().sweep(resolve=_enqueue))

    def rescan() -> dict[str, int]:
        return _report(integration().sweep(rescan=True, resolve=_enqueue))

    huey = queue.huey
    tasks = MlflowTasks(
        process=cast("TaskWrapper", huey.task(name="mamori.mlflow.process", retries=2)(process)),
        delivery=cast(
            "TaskWrapper",
            huey.task(name="mamori.mlflow.delivery", retries=2, retry_delay=5)(delivery),
        ),
        resolve=cast(
            "TaskWrapper",
            huey.task(name="mamori.mlflow.resolve", retries=2, retry_delay=10)(resolve),
        ),
        sweep=cast(
            "TaskWrapper",
            huey.periodic_task(
                cron_schedule(settings.mlflow_sweep_cron, "mlflow_sweep_cron"),
                name="mamori.mlflow.sweep",
            )(sweep),
        ),
        rescan=cast(
            "TaskWrapper",
            huey.periodic_task(
                cron_schedule(settings.mlflow_rescan_cron, "mlflow_rescan_cron"),
                name="mamori.mlflow.rescan",
            )(rescan),
        ),
    )
    # A delivery whose task was lost (worker killed, queue flushed) is still PENDING in the
    # store; every worker finishes those when it starts.
    huey.on_startup(name="mamori.mlflow.pending-on-start")(process)
    holder["tasks"] = tasks
    return tasks
