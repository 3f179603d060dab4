"""The job queue itself: a Huey instance on SQLite or Redis, and cron schedules for it.

The queue is only a doorbell; it knows no integration. Packages above it (the lifecycle, the
MLflow integration) register their own tasks on the Huey instance this module builds, so
imports keep flowing down DESIGN.md's table (``jobs`` never imports ``lifecycle``).
"""

from __future__ import annotations

from typing import Any

from huey import RedisHuey, SqliteHuey, crontab
from huey.api import Huey

from mamori.config import Settings
from mamori.errors import ConfigError

__all__ = ["cron_schedule", "make_huey"]


def cron_schedule(expr: str, setting: str) -> Any:
    """Huey's schedule for a five-field cron expression; a malformed one names ``setting``."""
    fields = expr.split()
    if len(fields) != 5:  # noqa: PLR2004 - the five cron fields
        msg = f"{setting} must have 5 fields (minute hour day month weekday), got {expr!r}"
        raise ConfigError(msg)
    minute, hour, day, month, weekday = fields
    return crontab(minute=minute, hour=hour, day=day, month=month, day_of_week=weekday)


def make_huey(settings: Settings, *, immediate: bool = False) -> Huey:
    """The Huey instance for ``settings``: Redis when ``queue_url`` is set, else SQLite.

    ``immediate=True`` runs tasks synchronously in the caller (tests, single-process demos).
    """
    if settings.queue_url:
        if not settings.queue_url.startswith(("redis://", "rediss://", "unix://")):
            msg = f"queue_url must be a redis:// URL, got {settings.queue_url.split('@')[-1]!r}"
            raise ConfigError(msg)
        return RedisHuey("mamori", url=settings.queue_url, immediate=immediate)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteHuey("mamori", filename=str(settings.data_dir / "queue.db"), immediate=immediate)
