"""401s and network-guard 403s: every one counted, audited at a bounded rate.

A refusal before authentication has no principal and costs the caller nothing, so writing
one audit record per refusal would let anyone flood (and slow) the hash-chained audit log.
Instead:

1. every refusal increments ``mamori_auth_refusals_total{reason, group}`` at once;
2. refusals are aggregated in memory per ``(reason, source address)`` and written as **one**
   audit record per key per interval (``refusal_audit_seconds``), with the count and the
   first refusal's detail;
3. at most :data:`MAX_SOURCES` distinct sources are kept per interval; further sources are
   folded into the source ``*`` so that many addresses (an IPv6 /64) cannot multiply the
   records either. At most ``2 * (MAX_SOURCES + 1)`` records are written per interval.

A background thread flushes every interval; :meth:`RefusalLog.stop` flushes what is left,
and a store failure keeps the counts for the next flush.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Final

import structlog
from prometheus_client import Counter

from mamori.errors import StoreError
from mamori.store import Store
from mamori.store.db import audit_append

__all__ = ["MAX_SOURCES", "RefusalLog", "RefusalReason"]

MAX_SOURCES: Final = 256
"""Distinct sources aggregated per interval before the rest are folded into ``*``."""
OTHER_SOURCES: Final = "*"

_log = structlog.get_logger("mamori.service")


class RefusalReason(enum.StrEnum):
    """Why a request was refused before any handler ran."""

    UNAUTHENTICATED = "unauthenticated"
    """401: a missing, malformed, unverifiable, expired or revoked credential."""
    NETWORK = "network"
    """403: the client address is not on the route group's allow list."""


@dataclass(slots=True)
class _Tally:
    count: int
    first_detail: str
    groups: set[str] = field(default_factory=set)
    policy_ids: set[str] = field(default_factory=set)


class RefusalLog:
    """Counts refusals in Prometheus and audits them as aggregated records."""

    def __init__(self, store: Store, counter: Counter, *, interval_seconds: float = 60.0) -> None:
        """Audit into ``store``; count into ``counter`` (labels: reason, group)."""
        self._store = store
        self._counter = counter
        self.interval = interval_seconds
        self._lock = threading.Lock()
        self._pending: dict[tuple[RefusalReason, str], _Tally] = {}
        self._sources: set[str] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def record(
        self,
        reason: RefusalReason,
        *,
        source: str,
        group: str,
        detail: str,
        policy_ids: tuple[str, ...] = (),
    ) -> None:
        """Count one refusal; it reaches the audit log with the next flush."""
        self._counter.labels(reason.value, group).inc()
        with self._lock:
            if source not in self._sources:
                if len(self._sources) >= MAX_SOURCES:
                    source = OTHER_SOURCES
                else:
                    self._sources.add(source)
            tally = self._pending.get((reason, source))
            if tally is None:
                tally = self._pending[reason, source] = _Tally(0, detail)
            tally.count += 1
            tally.groups.add(group)
            tally.policy_ids.update(policy_ids)

    def flush(self) -> int:
        """Write one audit record per pending ``(reason, source)``; return how many."""
        with self._lock:
            pending, self._pending = self._pending, {}
            self._sources = set()
        if not pending:
            return 0
        try:
            with self._store.write() as session:
                for (reason, source), tally in sorted(pending.items()):
                    audit_append(
                        session,
                        principal=f"anonymous|{source}",
                        action=f"refused-{reason.value}",
                        resource=",".join(sorted(tally.groups)),
                        decision="deny",
                        policy_ids=tuple(sorted(tally.policy_ids)),
                        reason=f"{tally.count} request(s) refused within "
                        f"{self.interval:g}s; first: {tally.first_detail}",
                    )
        except StoreError as exc:
            _log.warning("refusal_audit_failed", error=exc.diagnostics())
            self._merge_back(pending)
            return 0
        return len(pending)

    def _merge_back(self, pending: dict[tuple[RefusalReason, str], _Tally]) -> None:
        with self._lock:
            for key, tally in pending.items():
                current = self._pending.get(key)
                if current is None:
                    self._pending[key] = tally
                    self._sources.add(key[1])
                else:
                    current.count += tally.count
                    current.groups |= tally.groups
                    current.policy_ids |= tally.policy_ids

    def start(self) -> None:
        """Flush every :attr:`interval` seconds in a background thread."""
        if self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="mamori-refusals", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and flush what is pending."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(10)
            self._thread = None
        self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()
