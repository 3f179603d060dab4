"""Run Huey consumers for mamori's queue (``mamori worker``)."""

from __future__ import annotations

from huey.api import Huey

__all__ = ["run_worker"]


def run_worker(huey: Huey, *, workers: int) -> None:
    """Consume the tasks registered on ``huey`` until interrupted, one process per worker.

    Scans are CPU-bound pure Python, so workers are processes, not threads: two workers use
    two cores.
    """
    consumer = huey.create_consumer(
        workers=workers,
        worker_type="process",
        periodic=True,
        check_worker_health=True,
        health_check_interval=5,
    )
    consumer.run()
