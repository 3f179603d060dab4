"""MLDR: watch how a served model is queried, and act on what looks like an attack.

Each query (one input row, the caller's key, the model's top label and its confidence) passes
through five detectors. Each emits an :class:`MldrEvent` labelled with MITRE ATLAS ids
(:mod:`mamori.serving.atlas`) and applies its configured :class:`Response` to the key:

1. **Extraction** (PRADA, Juuti et al. 2019; AML.T0024.002). Per key and predicted class, a
   growing set of the key's queries; the distance of each new query to its nearest neighbour
   there goes into a window. Natural queries give roughly normally distributed distances;
   synthetic ones (Jacobian augmentation, random probing) do not, so a Shapiro-Wilk W below
   ``prada_w`` flags the key.
2. **Evasion / black-box optimisation** (Blacklight, Li et al. 2022; AML.T0015,
   AML.T0043.001). Each input is quantised, sliding windows are hashed with a secret key and
   the top hashes kept as its fingerprint, in ONE global, size-capped table. A query sharing
   ``bl_match`` hashes with an earlier query (from any key) is a near-duplicate; optimisation
   attacks make hundreds of them, so a key with ``bl_hits`` such queries is flagged, and an
   attacker split over many keys is caught because the table is shared.
3. **Membership probing** (label-only, Choquette-Choo et al. 2021; AML.T0024.000). Many
   perturbations around one point: ``mem_neighbours`` of a key's recent queries within a
   relative radius ``mem_radius`` of the new one.
4. **Inversion** (Fredrikson et al. 2015; AML.T0024.001). A window of a key's queries almost
   all answered with one class while that class' confidence climbs (Spearman rank correlation
   with time): a hill climb on one class' confidence. Needs confidences; label-only outputs
   skip it.
5. **Flooding / cost harvesting** (AML.T0034.000). More than ``flood_max`` queries, or more
   than ``flood_cost`` input values, from one key inside ``flood_window`` seconds.

All state is bounded: per-key state sits in an LRU of ``max_keys`` keys, every per-key buffer
and the fingerprint table have caps. Blocked keys are kept apart so eviction never unblocks.
The monitor is thread-safe (one lock); the gateway calls it from a thread pool.
"""

from __future__ import annotations

import enum
import hashlib
import math
import os
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped]  # no stubs for scipy

from mamori.errors import MamoriError

__all__ = [
    "DETECTOR_ATLAS",
    "Detector",
    "MldrConfig",
    "MldrEvent",
    "MldrInputError",
    "Monitor",
    "Response",
    "Standing",
]

_Vector = npt.NDArray[np.float64]
_Hit = tuple[str, dict[str, float]] | None


@dataclass(frozen=True, slots=True)
class _Query:
    key: str
    row: _Vector
    label: int
    confidence: float | None
    now: float


_Check = Callable[["_KeyState", _Query], _Hit]


class MldrInputError(MamoriError, ValueError):
    """A query the monitor cannot judge (wrong shape, not finite); the caller refuses it."""


class Detector(enum.StrEnum):
    """One MLDR detector."""

    EXTRACTION = "extraction"
    EVASION = "evasion"
    MEMBERSHIP = "membership"
    INVERSION = "inversion"
    FLOOD = "flood"


class Response(enum.StrEnum):
    """What a detection does to the key, in increasing severity."""

    LOG = "log"
    THROTTLE = "throttle"
    BLOCK = "block"


DETECTOR_ATLAS: Final[Mapping[Detector, tuple[str, ...]]] = MappingProxyType(
    {
        Detector.EXTRACTION: ("AML.T0024.002",),
        Detector.EVASION: ("AML.T0015", "AML.T0043.001"),
        Detector.MEMBERSHIP: ("AML.T0024.000",),
        Detector.INVERSION: ("AML.T0024.001",),
        Detector.FLOOD: ("AML.T0034.000",),
    }
)
"""The ATLAS techniques each detector's events carry."""

_DEFAULT_RESPONSES: Final = MappingProxyType(
    {
        Detector.EXTRACTION: Response.BLOCK,
        Detector.EVASION: Response.BLOCK,
        Detector.MEMBERSHIP: Response.THROTTLE,
        Detector.INVERSION: Response.THROTTLE,
        Detector.FLOOD: Response.THROTTLE,
    }
)


@dataclass(frozen=True, slots=True)
class MldrConfig:
    """Detector thresholds and responses. Defaults were tuned on bench/mldr_bench.py."""

    responses: Mapping[Detector, Response] = field(default_factory=lambda: _DEFAULT_RESPONSES)
    throttle_seconds: float = 60.0
    """How long a THROTTLE response keeps a key out."""
    cooldown_seconds: float = 60.0
    """At most one event per key and detector in this interval (the response still holds)."""
    max_keys: int = 10_000
    # Extraction, PRADA:
    prada_min: int = 50
    """Distances needed before the normality test runs."""
    prada_window: int = 200
    prada_w: float = 0.85
    prada_points: int = 2_000
    """Cap on the growing set kept per key (all classes)."""
    # Evasion, Blacklight:
    bl_step: float = 2.0
    """Quantisation step, in input units (the input's scale: 16 levels for 0..16 pixels → 2)."""
    bl_window: int = 8
    bl_top: int = 20
    bl_match: int = 10
    bl_hits: int = 3
    bl_table: int = 500_000
    """Cap on hashes in the global fingerprint table (FIFO eviction)."""
    # Membership probing:
    mem_history: int = 100
    mem_radius: float = 0.15
    mem_neighbours: int = 8
    # Inversion:
    inv_window: int = 40
    inv_same_class: float = 0.9
    inv_trend: float = 0.5
    # Flooding and cost harvesting:
    flood_window: float = 10.0
    flood_max: int = 100
    flood_cost: int = 1_000_000

    def __post_init__(self) -> None:
        """Reject settings that would disable a detector by accident."""
        positive = {
            "throttle_seconds": self.throttle_seconds,
            "max_keys": self.max_keys,
            "prada_min": self.prada_min,
            "bl_step": self.bl_step,
            "bl_window": self.bl_window,
            "bl_top": self.bl_top,
            "bl_match": self.bl_match,
            "bl_hits": self.bl_hits,
            "bl_table": self.bl_table,
            "mem_history": self.mem_history,
            "mem_radius": self.mem_radius,
            "mem_neighbours": self.mem_neighbours,
            "inv_window": self.inv_window,
            "flood_window": self.flood_window,
            "flood_max": self.flood_max,
            "flood_cost": self.flood_cost,
        }
        for name, value in positive.items():
            if not value > 0:
                msg = f"MldrConfig.{name} must be > 0, got {value!r}"
                raise ValueError(msg)
        if not self.prada_min <= self.prada_window:
            msg = "MldrConfig.prada_min must be <= prada_window"
            raise ValueError(msg)
        if self.bl_match > self.bl_top:
            msg = "MldrConfig.bl_match must be <= bl_top (a fingerprint has bl_top hashes)"
            raise ValueError(msg)
        if set(self.responses) != set(Detector):
            msg = "MldrConfig.responses must name a response for every detector"
            raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class MldrEvent:
    """One detection: which detector, which key, what it did, and the numbers behind it."""

    detector: Detector
    key: str
    atlas: tuple[str, ...]
    response: Response
    message: str
    query: int
    """The key's query count when the detector fired (1 = its first query)."""
    at: float
    evidence: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Standing:
    """Whether a key may query now; ``retry_after`` seconds when throttled."""

    response: Response | None
    retry_after: float = 0.0

    @property
    def allowed(self) -> bool:
        """No block and no running throttle."""
        return self.response is None


class _Ring:
    """A fixed-capacity ring of row vectors in one array (no per-query allocation)."""

    __slots__ = ("count", "data", "next")

    def __init__(self, capacity: int, dim: int) -> None:
        self.data = np.empty((capacity, dim), dtype=np.float64)
        self.count = 0
        self.next = 0

    def rows(self) -> _Vector:
        return self.data[: self.count]

    def add(self, row: _Vector) -> None:
        self.data[self.next] = row
        self.next = (self.next + 1) % len(self.data)
        self.count = min(self.count + 1, len(self.data))


class _KeyState:
    """Everything the detectors remember about one key."""

    def __init__(self, config: MldrConfig, dim: int) -> None:
        self.queries = 0
        self.last_event: dict[Detector, float] = {}
        self.throttled_until = 0.0
        # extraction
        self.growing: dict[int, _Ring] = {}
        self.growing_dist: dict[int, deque[float]] = {}
        self.thresholds: dict[int, float] = {}
        self.distances: deque[float] = deque(maxlen=config.prada_window)
        self.points = 0
        # evasion
        self.bl_hits = 0
        self.bl_peers: set[str] = set()
        # membership
        self.recent = _Ring(config.mem_history, dim)
        # Inversion:
        self.answers: deque[tuple[int, float]] = deque(maxlen=config.inv_window)
        # flood
        self.times: deque[tuple[float, int]] = deque()
        self.cost = 0


def _spearman(values: Sequence[float]) -> float:
    """Spearman rank correlation of ``values`` with their order; 0 for a constant series."""
    if len(set(values)) < 2:  # noqa: PLR2004 - a rank correlation needs two distinct values
        return 0.0
    rho = stats.spearmanr(np.arange(len(values)), np.asarray(values)).statistic
    return float(rho) if math.isfinite(rho) else 0.0


class Monitor:
    """The MLDR detectors for one served model. :meth:`observe` every answered query."""

    def __init__(
        self,
        config: MldrConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        secret: bytes | None = None,
    ) -> None:
        """Make a monitor with empty state.

        ``secret`` keys the fingerprint hashes (random by default, so an attacker cannot
        predict which windows are kept); pass one only for reproducible tests.
        """
        self.config = config or MldrConfig()
        self._clock = clock
        self._secret = secret if secret is not None else os.urandom(16)
        self._lock = threading.Lock()
        self._keys: OrderedDict[str, _KeyState] = OrderedDict()
        self._blocked: dict[str, MldrEvent] = {}
        self._dim: int | None = None
        # Blacklight: hash -> query id, and query id -> key; FIFO-capped together.
        self._table: OrderedDict[bytes, int] = OrderedDict()
        self._owners: OrderedDict[int, tuple[str, bytes]] = OrderedDict()
        self._next_query = 0

    # -- standing -------------------------------------------------------------------------

    def standing(self, key: str, now: float | None = None) -> Standing:
        """Whether ``key`` may query now (blocked, throttled with a retry delay, or allowed)."""
        now = self._clock() if now is None else now
        with self._lock:
            if key in self._blocked:
                return Standing(Response.BLOCK)
            state = self._keys.get(key)
            if state is not None and state.throttled_until > now:
                return Standing(Response.THROTTLE, state.throttled_until - now)
        return Standing(None)

    def unblock(self, key: str) -> bool:
        """Lift a block (an operator's decision); True if the key was blocked."""
        with self._lock:
            return self._blocked.pop(key, None) is not None

    def blocked(self) -> dict[str, MldrEvent]:
        """The blocked keys and the event that blocked each."""
        with self._lock:
            return dict(self._blocked)

    # -- observation ----------------------------------------------------------------------

    def observe(
        self,
        key: str,
        inputs: Sequence[float] | npt.NDArray[np.floating],
        label: int,
        confidence: float | None = None,
        *,
        now: float | None = None,
    ) -> list[MldrEvent]:
        """Run every detector on one answered query; returns the events it raised."""
        row = np.asarray(inputs, dtype=np.float64).ravel()
        if row.size == 0 or not np.all(np.isfinite(row)):
            msg = "an MLDR query must be a non-empty vector of finite numbers"
            raise MldrInputError(msg)
        if confidence is not None and not 0.0 <= confidence <= 1.0:
            msg = f"confidence must be within [0, 1], got {confidence!r}"
            raise MldrInputError(msg)
        now = self._clock() if now is None else now
        with self._lock:
            if self._dim is None:
                self._dim = row.size
            elif row.size != self._dim:
                msg = f"this model takes {self._dim} input values per row, got {row.size}"
                raise MldrInputError(msg)
            state = self._state(key)
            state.queries += 1
            events: list[MldrEvent] = []
            query = _Query(key, row, label, confidence, now)
            checks: tuple[tuple[Detector, _Check], ...] = (
                (Detector.FLOOD, self._flood),
                (Detector.EVASION, self._evasion),
                (Detector.MEMBERSHIP, self._membership),
                (Detector.EXTRACTION, self._extraction),
                (Detector.INVERSION, self._inversion),
            )
            for detector, check in checks:
                hit = check(state, query)
                if hit is not None and not self._cooling(state, detector, now):
                    events.append(self._act(state, query, detector, hit))
            return events

    def _state(self, key: str) -> _KeyState:
        state = self._keys.get(key)
        if state is None:
            assert self._dim is not None
            state = _KeyState(self.config, self._dim)
            self._keys[key] = state
            if len(self._keys) > self.config.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        return state

    def _act(
        self, state: _KeyState, query: _Query, detector: Detector, hit: tuple[str, dict[str, float]]
    ) -> MldrEvent:
        response = self.config.responses[detector]
        event = MldrEvent(
            detector=detector,
            key=query.key,
            atlas=DETECTOR_ATLAS[detector],
            response=response,
            message=hit[0],
            query=state.queries,
            at=query.now,
            evidence=hit[1],
        )
        state.last_event[detector] = query.now
        if response is Response.BLOCK:
            self._blocked.setdefault(query.key, event)
        elif response is Response.THROTTLE:
            until = query.now + self.config.throttle_seconds
            state.throttled_until = max(state.throttled_until, until)
        return event

    def _cooling(self, state: _KeyState, detector: Detector, now: float) -> bool:
        last = state.last_event.get(detector)
        return last is not None and now - last < self.config.cooldown_seconds

    # -- the detectors: each returns (message, evidence) on a hit, else None ---------------

    def _flood(self, state: _KeyState, q: _Query) -> _Hit:
        cfg = self.config
        state.times.append((q.now, q.row.size))
        state.cost += q.row.size
        while state.times and state.times[0][0] <= q.now - cfg.flood_window:
            state.cost -= state.times.popleft()[1]
        count = len(state.times)
        if count <= cfg.flood_max and state.cost <= cfg.flood_cost:
            return None
        return (
            f"{count} queries ({state.cost} input values) in {cfg.flood_window:g} s",
            {"queries": float(count), "cost": float(state.cost)},
        )

    def _fingerprint(self, row: _Vector) -> list[bytes]:
        """Blacklight's fingerprint: the top ``bl_top`` keyed hashes of quantised windows."""
        cfg = self.config
        quantised = np.floor(row / cfg.bl_step).astype(np.int32).tobytes()
        width = 4 * cfg.bl_window
        windows = max(1, row.size - cfg.bl_window + 1)
        hashes = {
            hashlib.blake2b(
                quantised[4 * i : 4 * i + width], key=self._secret, digest_size=8
            ).digest()
            for i in range(windows)
        }
        return sorted(hashes, reverse=True)[: cfg.bl_top]

    def _evasion(self, state: _KeyState, q: _Query) -> _Hit:
        cfg = self.config
        fingerprint = self._fingerprint(q.row)
        matches: dict[int, int] = {}
        for digest in fingerprint:
            earlier = self._table.get(digest)
            if earlier is not None:
                matches[earlier] = matches.get(earlier, 0) + 1
        exact = hashlib.blake2b(q.row.tobytes(), key=self._secret, digest_size=16).digest()
        query = self._next_query
        self._next_query += 1
        for digest in fingerprint:
            self._table[digest] = query
            self._table.move_to_end(digest)
        self._owners[query] = (q.key, exact)
        while len(self._table) > cfg.bl_table:
            self._table.popitem(last=False)
        while len(self._owners) > cfg.bl_table:
            self._owners.popitem(last=False)
        # An exact repeat of an earlier input is not a probe: it teaches the caller nothing
        # new (the model is deterministic), and popular inputs repeat across benign users.
        near = [
            (query_id, count)
            for query_id, count in matches.items()
            if count >= cfg.bl_match and self._owners.get(query_id, ("", b""))[1] != exact
        ]
        if not near:
            return None
        best = max(near, key=lambda item: item[1])
        state.bl_hits += 1
        owner = self._owners.get(best[0])
        if owner is not None and owner[0] != q.key:
            state.bl_peers.add(owner[0])
        if state.bl_hits < cfg.bl_hits:
            return None
        return (
            (
                f"{state.bl_hits} near-duplicate queries (fingerprint match"
                f" {best[1]}/{cfg.bl_top}), matching queries of {len(state.bl_peers)}"
                " other key(s)"
            ),
            {"hits": float(state.bl_hits), "peers": float(len(state.bl_peers))},
        )

    def _membership(self, state: _KeyState, q: _Query) -> _Hit:
        cfg = self.config
        near = 0
        if state.recent.count:
            distances = np.linalg.norm(state.recent.rows() - q.row, axis=1)
            radius = cfg.mem_radius * max(float(np.linalg.norm(q.row)), 1e-12)
            # Exact repeats (distance 0) are not perturbations; a retrying client sends them.
            near = int(np.count_nonzero((distances <= radius) & (distances > 0)))
        state.recent.add(q.row)
        if near < cfg.mem_neighbours:
            return None
        return (
            (
                f"{near} of the last {state.recent.count} queries lie within"
                f" {cfg.mem_radius:g} (relative) of this one"
            ),
            {"neighbours": float(near)},
        )

    def _extraction(self, state: _KeyState, q: _Query) -> _Hit:
        cfg = self.config
        growing = state.growing.get(q.label)
        if growing is None:
            if state.points < cfg.prada_points:
                state.growing[q.label] = _Ring(cfg.prada_points, q.row.size)
                state.growing[q.label].add(q.row)
                state.growing_dist[q.label] = deque(maxlen=cfg.prada_window)
                state.thresholds[q.label] = 0.0
                state.points += 1
            return None
        nearest = float(np.min(np.linalg.norm(growing.rows() - q.row, axis=1)))
        if nearest == 0.0:
            return None  # an exact repeat carries no information about the model
        state.distances.append(nearest)
        if nearest > state.thresholds[q.label] and state.points < cfg.prada_points:
            growing.add(q.row)
            state.points += 1
            kept = state.growing_dist[q.label]
            kept.append(nearest)
            state.thresholds[q.label] = max(float(np.mean(kept) - np.std(kept)), 0.0)
        if len(state.distances) < cfg.prada_min:
            return None
        sample = np.asarray(state.distances)
        # Every distance identical is as far from natural data as it gets (and W undefined).
        w = 0.0 if float(np.ptp(sample)) == 0.0 else float(stats.shapiro(sample).statistic)
        if w >= cfg.prada_w:
            return None
        return (
            (
                "distances between this key's queries are not normally distributed"
                f" (Shapiro-Wilk W={w:.3f} < {cfg.prada_w:g} over {sample.size})"
            ),
            {"w": w, "n": float(sample.size)},
        )

    def _inversion(self, state: _KeyState, q: _Query) -> _Hit:
        cfg = self.config
        if q.confidence is None:
            return None
        state.answers.append((q.label, q.confidence))
        if len(state.answers) < cfg.inv_window:
            return None
        labels = [answer[0] for answer in state.answers]
        top = max(set(labels), key=labels.count)
        share = labels.count(top) / len(labels)
        if share < cfg.inv_same_class:
            return None
        trend = _spearman([c if label == top else 0.0 for label, c in state.answers])
        if trend < cfg.inv_trend:
            return None
        return (
            (
                f"{share:.0%} of the last {len(labels)} answers are class {top}"
                f" and its confidence keeps rising (Spearman {trend:.2f})"
            ),
            {"share": share, "trend": trend, "class": float(top)},
        )
