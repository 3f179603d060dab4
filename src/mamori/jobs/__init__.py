"""Background work on Huey (SQLite or Redis): the queue and its consumers, no integration.

Tasks are registered from above (``mamori.lifecycle.queue``), never imported from here.
"""

from __future__ import annotations

from mamori.jobs.queue import cron_schedule, make_huey
from mamori.jobs.worker import run_worker

__all__ = ["cron_schedule", "make_huey", "run_worker"]
