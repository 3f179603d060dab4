"""Background work: scan jobs and the periodic reconciliation, on Huey (SQLite or Redis)."""

from __future__ import annotations

from mamori.jobs.queue import JobQueue, enqueue_scan, make_queue
from mamori.jobs.worker import run_worker

__all__ = ["JobQueue", "enqueue_scan", "make_queue", "run_worker"]
