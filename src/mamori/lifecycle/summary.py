"""Counts for the console's summary: what the store holds, by state, verdict, severity, source.

Read-only aggregate queries over the verdict store; :meth:`mamori.lifecycle.Lifecycle.summary`
authorizes the caller before any of them runs. Verdicts and severities count only the current
ruleset's finished scans, the same scans the gate and the views read.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from mamori.store.models import ArtifactRow, ArtifactState, BindingRow, ScanRow, ScanStatus

__all__ = ["Summary", "summarize"]


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts over the whole store (each mapping is sorted by key)."""

    artifacts: int
    by_state: tuple[tuple[str, int], ...]
    by_verdict: tuple[tuple[str, int], ...]
    by_severity: tuple[tuple[str, int], ...]
    """Artifacts by the highest severity of their current scan (``none``: no finding)."""
    by_source: tuple[tuple[str, int], ...]
    """Distinct artifacts per binding source (an artifact may count under several)."""
    scans_per_day: tuple[tuple[date, int], ...]
    """Finished scans per UTC day, oldest first, every day of the window present."""

    def count(self, state: ArtifactState) -> int:
        """Artifacts in ``state``."""
        return dict(self.by_state).get(state.value, 0)


def _pairs(rows: Iterable[tuple[object, object]]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((str(key), int(str(n))) for key, n in rows))


def summarize(session: Session, ruleset_version: str, *, days: int = 14) -> Summary:
    """Aggregate the store in ``session``; the trend covers the last ``days`` UTC days."""
    current = (ScanRow.ruleset_version == ruleset_version) & (ScanRow.status == ScanStatus.DONE)
    total = session.execute(select(func.count(ArtifactRow.id))).scalar_one()
    by_state = session.execute(
        select(ArtifactRow.state, func.count()).group_by(ArtifactRow.state)
    ).all()
    by_verdict = session.execute(
        select(ScanRow.verdict, func.count()).where(current).group_by(ScanRow.verdict)
    ).all()
    # Grouped by the bare column: PostgreSQL does not match a bound-parameter coalesce in the
    # GROUP BY to the one in the SELECT list.
    by_severity = session.execute(
        select(ScanRow.max_severity, func.count()).where(current).group_by(ScanRow.max_severity)
    ).all()
    by_source = session.execute(
        select(BindingRow.source, func.count(func.distinct(BindingRow.artifact_id))).group_by(
            BindingRow.source
        )
    ).all()
    today = datetime.now(UTC).date()
    first = today - timedelta(days=days - 1)
    # date() exists in SQLite and PostgreSQL alike; SQLite's CAST AS DATE would yield the year.
    day = func.date(ScanRow.finished_at)
    per_day = {
        (d if isinstance(d, date) else date.fromisoformat(str(d))): int(n)
        for d, n in session.execute(
            select(day, func.count())
            .where(
                current, ScanRow.finished_at >= datetime.combine(first, datetime.min.time(), UTC)
            )
            .group_by(day)
        ).all()
    }
    return Summary(
        artifacts=int(total),
        by_state=_pairs((s.value, n) for s, n in by_state),
        by_verdict=_pairs((v or "none", n) for v, n in by_verdict),
        by_severity=_pairs((s or "none", n) for s, n in by_severity),
        by_source=_pairs((s, n) for s, n in by_source),
        scans_per_day=tuple(
            (first + timedelta(days=i), per_day.get(first + timedelta(days=i), 0))
            for i in range(days)
        ),
    )
