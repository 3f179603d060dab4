"""Run Huey consumers for mamori's queue (``mamori worker``)."""

from __future__ import annotations

from mamori.config import Settings
from mamori.jobs.queue import make_queue

__all__ = ["run_worker"]


def run_worker(settings: Settings, *, workers: int | None = None) -> None:
    """Consume scan jobs until interrupted, with one process per worker.

    Scans are CPU-bound pure Python, so workers are processes, not threads: two workers use
    two cores.
    """
    queue = make_queue(settings)
    consumer = queue.huey.create_consumer(
        workers=workers or settings.workers,
        worker_type="process",
        periodic=True,
        check_worker_health=True,
        health_check_interval=5,
    )
    consumer.run()
