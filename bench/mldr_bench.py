"""MLDR benchmark: scripted clients against a small sklearn model, through the MLDR monitor.

Writes bench/results/mldr.json and bench/results/mldr.md. The model is a logistic regression
on sklearn's bundled digits (8x8 images, values 0..16; no download), trained on one half; the
other half is the natural data benign clients (and the natural-data extraction attacker) draw
from. Every client runs in ONE :class:`mamori.serving.mldr.Monitor`, interleaved on a simulated
clock, so benign keys share the global fingerprint table with the attackers (as in production).
The model answers in process: the detectors see the same (input, label, confidence) a gateway
in front of the sandbox gives them, and the sandbox adds nothing they could use.

Clients (each a key unless said otherwise), each sending up to ``--queries`` queries:
- benign: natural test images at random, ~1 query/s;
- extraction-jbda: Papernot-style Jacobian augmentation from 10 seed images (synthetic queries);
- extraction-natural: the same attacker drawing natural test images (known to evade PRADA);
- membership-label-only: Gaussian perturbations around target images, label only;
- evasion-hsj: a HopSkipJump-like boundary walk (binary search + sampled gradient steps);
- sybil-hsj: the same boundary walk split round-robin over 5 keys;
- inversion: a hill climb on one class' confidence from a blank image;
- flood: natural images at 50 queries/s.

Targets: benign false positives <= 1 % of benign keys per detector; each attack detected
within its first 200 queries (by any detector: the issue's target; by the detector meant for
it: reported too). extraction-natural is measured, not targeted.

Usage: ``python bench/mldr_bench.py [--quick] [--benign N] [--queries Q] [--seed S]``.
"""

from __future__ import annotations

import argparse
import heapq
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.datasets import load_digits
from sklearn.linear_model import LogisticRegression

from mamori.audit import AuditChain, MemorySink
from mamori.identity import ClaimMapping, DevIssuer, JwksSource, VerifierConfig
from mamori.serving.gateway import (
    Gateway,
    GatewayConfig,
    InvokeBody,
    ModelCard,
    authenticator,
    handle_invoke,
)
from mamori.serving.mldr import Detector, MldrConfig, Monitor

OUT = Path(__file__).parent / "results"
TARGET_FP, TARGET_QUERIES, TARGET_GATEWAY_US = 0.01, 200, 5_000.0
Answer = tuple[int, np.ndarray]
Client = Generator[np.ndarray, Answer, None]

# The detector each attack is meant to trip (others may fire too; all are reported).
EXPECTED: dict[str, Detector | None] = {
    "extraction-jbda": Detector.EXTRACTION,
    "extraction-jbda-small": Detector.EXTRACTION,
    "extraction-natural": Detector.EXTRACTION,
    "membership-label-only": Detector.MEMBERSHIP,
    "evasion-hsj": Detector.EVASION,
    "sybil-hsj": Detector.EVASION,
    "inversion": Detector.INVERSION,
    "flood": Detector.FLOOD,
}


def _benign(rng: np.random.Generator, pool: np.ndarray, n: int) -> Client:
    for _ in range(n):
        yield pool[rng.integers(len(pool))]


def _jbda(rng: np.random.Generator, pool: np.ndarray, n: int, step: float = 4.0) -> Client:
    """Papernot et al. 2017: label the seeds, fit a substitute, step along sign(gradient)."""
    known = [pool[i] for i in rng.choice(len(pool), 10, replace=False)]
    labels: list[int] = []
    for x in known:
        labels.append((yield x)[0])  # noqa: PERF401 - each label answers a yield
    sent, lam = len(known), step
    while sent < n:
        substitute = LogisticRegression(max_iter=300).fit(np.array(known), labels)
        classes = list(substitute.classes_)
        new = []
        for x, y in zip(known, labels, strict=True):
            if len(classes) < 2 or y not in classes:
                grad = rng.choice([-1.0, 1.0], size=x.shape)
            else:
                row = classes.index(y) if len(classes) > 2 else 0
                grad = substitute.coef_[row] * (1 if len(classes) > 2 or y == classes[1] else -1)
            new.append(np.clip(x + lam * np.sign(grad), 0, 16))
        for x in new:
            if sent >= n:
                return
            labels.append((yield x)[0])
            known.append(x)
            sent += 1
        lam = -lam  # Papernot's periodic step size flip


def _membership(rng: np.random.Generator, pool: np.ndarray, n: int) -> Client:
    """Choquette-Choo et al. 2021 label-only: how robust is the label to noise around x?"""
    sent = 0
    while sent < n:
        target = pool[rng.integers(len(pool))]
        for _ in range(50):
            if sent >= n:
                return
            yield np.clip(target + rng.normal(0, 1.0, target.shape), 0, 16)
            sent += 1


def _hsj(rng: np.random.Generator, pool: np.ndarray, n: int) -> Client:
    """A HopSkipJump-like decision-boundary attack (label only) on one source image."""
    source = pool[rng.integers(len(pool))]
    y0 = (yield source)[0]
    sent = 1
    start = next(x for x in pool[rng.permutation(len(pool))] if not np.array_equal(x, source))
    adv = start
    while sent < n:
        lo, hi = 0.0, 1.0  # binary search between source (0) and adv (1) for the boundary
        for _ in range(8):
            mid = (lo + hi) / 2
            label = (yield source + mid * (adv - source))[0]
            sent += 1
            lo, hi = (lo, mid) if label != y0 else (mid, hi)
        boundary = source + hi * (adv - source)
        grad = np.zeros_like(source)
        for _ in range(20):  # estimate the gradient direction from sign of label changes
            u = rng.normal(0, 1, source.shape)
            u /= np.linalg.norm(u)
            label = (yield boundary + 0.5 * u)[0]
            sent += 1
            grad += u if label != y0 else -u
        norm = np.linalg.norm(grad)
        adv = np.clip(boundary + 2.0 * grad / norm if norm else boundary, 0, 16)


def _inversion(rng: np.random.Generator, pool: np.ndarray, n: int) -> Client:
    """Fredrikson-style hill climb maximising class 3's confidence from a blank image."""
    del pool
    x = np.zeros(64)
    best = (yield x)[1][3]
    for _ in range(n - 1):
        candidate = x.copy()
        candidate[rng.integers(64)] = rng.uniform(0, 16)
        score = (yield candidate)[1][3]
        if score > best:
            x, best = candidate, score


def _run(args: argparse.Namespace) -> dict[str, Any]:
    rng = np.random.default_rng(args.seed)
    digits = load_digits()
    order = rng.permutation(len(digits.data))
    train, test = order[: len(order) // 2], order[len(order) // 2 :]
    model = LogisticRegression(max_iter=2000).fit(digits.data[train], digits.target[train])
    pool = digits.data[test].astype(np.float64)
    monitor = Monitor(secret=b"bench")

    # (name, key, client, mean seconds between queries)
    clients: list[tuple[str, str, Iterator[np.ndarray], float]] = [
        ("benign", f"benign-{i}", _benign(rng, pool, args.queries), 1.0) for i in range(args.benign)
    ]
    makers = {
        "extraction-jbda": _jbda,
        "extraction-jbda-small": lambda r, p, n: _jbda(r, p, n, step=2.0),
        "extraction-natural": _benign,
        "membership-label-only": _membership,
        "evasion-hsj": _hsj,
        "inversion": _inversion,
        "flood": _benign,
    }
    for name, make in makers.items():
        gap = 0.02 if name == "flood" else 0.5
        clients.extend(
            (name, f"{name}-{i}", make(rng, pool, args.queries), gap) for i in range(args.attackers)
        )
    sybils = [_hsj(rng, pool, args.queries * 5) for _ in range(args.attackers)]

    # Each attacker (a "group": one key, or the 5 keys of a Sybil) is driven on its own
    # simulated clock; a heap interleaves all of them into the one monitor.
    events: dict[str, list[tuple[Detector, int]]] = {}
    sent: dict[str, int] = {}
    kinds: dict[str, str] = {}
    answers: dict[str, Answer] = {}
    heap: list[tuple[float, int, str, str, Any]] = []
    for n, (name, group, gen, gap) in enumerate(clients):
        heapq.heappush(heap, (rng.exponential(gap), n, name, group, (gen, gap, None)))
    for i, gen in enumerate(sybils):
        item = (gen, 0.5, 0)
        heapq.heappush(
            heap, (rng.exponential(0.5), len(clients) + i, "sybil-hsj", f"sybil-{i}", item)
        )
    cost: list[float] = []
    cpu_cost: list[float] = []
    label_only = {"membership-label-only", "evasion-hsj", "sybil-hsj"}
    while heap:
        now, n, name, group, (gen, gap, turn) = heapq.heappop(heap)
        key = group if turn is None else f"{group}-key{turn}"
        try:
            x = gen.send(answers[group]) if group in answers else next(gen)
        except StopIteration:
            continue
        probs = model.predict_proba(x.reshape(1, -1))[0]
        label = int(np.argmax(probs))
        answers[group] = (label, probs)
        # Label-only attackers get no confidence from the API, so the monitor sees none either.
        conf = None if name in label_only else float(probs[label])
        started, cpu = time.perf_counter(), time.thread_time()
        raised = monitor.observe(key, x, label, conf, now=now)
        cost.append(time.perf_counter() - started)
        cpu_cost.append(time.thread_time() - cpu)
        sent[group] = sent.get(group, 0) + 1
        kinds[group] = name
        for event in raised:
            events.setdefault(group, []).append((event.detector, sent[group]))
        nxt = None if turn is None else (turn + 1) % 5
        heapq.heappush(heap, (now + rng.exponential(gap), n, name, group, (gen, gap, nxt)))
    result = _summarise(args, kinds, sent, events, cost)
    result["detector_cpu_us"] = _percentiles(cpu_cost)
    return result


def _percentiles(seconds: list[float]) -> dict[str, float]:
    us = sorted(c * 1e6 for c in seconds)
    return {
        "p50": us[len(us) // 2],
        "p99": us[int(len(us) * 0.99)],
        "mean": statistics.fmean(us),
        "queries": len(us),
    }


def _summarise(
    args: argparse.Namespace,
    kinds: dict[str, str],
    sent: dict[str, int],
    events: dict[str, list[tuple[Detector, int]]],
    cost: list[float],
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    for name in ["benign", *EXPECTED]:
        groups = [g for g, k in kinds.items() if k == name]
        per: dict[str, Any] = {"clients": len(groups), "queries": sum(sent[g] for g in groups)}
        for detector in Detector:
            firsts = [
                min(q for d, q in events.get(g, []) if d is detector)
                for g in groups
                if any(d is detector for d, _ in events.get(g, []))
            ]
            per[detector.value] = {
                "detected": len(firsts) / len(groups) if groups else 0.0,
                "median_queries": statistics.median(firsts) if firsts else None,
                "max_queries": max(firsts) if firsts else None,
            }
        anys = [min(q for _, q in events[g]) for g in groups if events.get(g)]
        per["any"] = {
            "detected": len(anys) / len(groups) if groups else 0.0,
            "median_queries": statistics.median(anys) if anys else None,
            "max_queries": max(anys) if anys else None,
        }
        rows[name] = per
    verdicts = {}
    for detector in Detector:
        fp = rows["benign"][detector.value]["detected"]
        verdicts[f"benign FP {detector.value}"] = fp <= TARGET_FP
    for name, detector in EXPECTED.items():
        if detector is None or name == "extraction-natural":
            continue
        for column, label in (("any", "any detector"), (detector.value, detector.value)):
            cell = rows[name][column]
            verdicts[f"{name} by {label} within {TARGET_QUERIES}"] = (
                cell["detected"] == 1.0
                and cell["max_queries"] is not None
                and cell["max_queries"] <= TARGET_QUERIES
            )
    return {
        "machine": f"{platform.machine()}, Python {platform.python_version()}",
        "seed": args.seed,
        "benign_clients": args.benign,
        "queries_per_client": args.queries,
        "rows": rows,
        "targets": verdicts,
        "detector_cost_us": _percentiles(cost),
    }


def _markdown(result: dict[str, Any]) -> str:
    detectors = [*(d.value for d in Detector), "any"]
    lines = [
        "# MLDR benchmark",
        "",
        (
            f"Machine: {result['machine']}. Seed {result['seed']}; {result['benign_clients']}"
            f" benign clients, {result['queries_per_client']} queries per client"
            " (Sybil: 5 keys, 5x)."
        ),
        "",
        (
            "Share of clients detected by each detector, and the median / worst number of the"
            " client's queries before the first detection:"
        ),
        "",
        "| client | clients | " + " | ".join(detectors) + " |",
        "|---|---|" + "---|" * len(detectors),
    ]
    for name, row in result["rows"].items():
        cells = []
        for d in detectors:
            cell = row[d]
            if cell["median_queries"] is None:
                cells.append(f"{cell['detected']:.0%}")
            else:
                cells.append(
                    f"{cell['detected']:.0%} ({cell['median_queries']:g}/{cell['max_queries']})"
                )
        lines.append(f"| {name} | {row['clients']} | " + " | ".join(cells) + " |")
    lines += ["", "| target | result |", "|---|---|"]
    lines += [f"| {k} | {'PASS' if ok else 'FAIL'} |" for k, ok in result["targets"].items()]
    c, t = result["detector_cost_us"], result["detector_cpu_us"]
    g = result["gateway_us"]
    lines += [
        "",
        (
            f"Detector cost per query (all five, in process), wall: p50 {c['p50']:.0f} µs, p99"
            f" {c['p99']:.0f} µs, mean {c['mean']:.0f} µs; thread CPU: p50 {t['p50']:.0f} µs,"
            f" p99 {t['p99']:.0f} µs, mean {t['mean']:.0f} µs over {c['queries']} queries."
            f" Load average at start {result['load']:.1f} on {os.cpu_count()} cores (with a"
            " load above ~1 per core, wall percentiles measure the neighbours, not us)."
        ),
        "",
        (
            "Gateway overhead per 1-row request (JWT verification, Cedar invoke with lineage,"
            " audit record, MLDR standing, buckets, all five detectors, hardening; model and"
            f" HTTP excluded), {g['queries']} requests: wall p50 {g['p50']:.0f} µs, p99"
            f" {g['p99']:.0f} µs; thread CPU p50 {g['cpu_p50']:.0f} µs, p99"
            f" {g['cpu_p99']:.0f} µs (target p99 < 5000 µs:"
            f" {'PASS' if g['p99'] < TARGET_GATEWAY_US else 'FAIL'} wall,"
            f" {'PASS' if g['cpu_p99'] < TARGET_GATEWAY_US else 'FAIL'} CPU)."
        ),
        "",
        (
            "Natural-data extraction (an attacker drawing real images) is expected to evade"
            " PRADA: its distances are as normal as a benign client's. Its row measures it."
        ),
    ]
    return "\n".join(lines) + "\n"


def _gateway_overhead(n: int) -> dict[str, float]:
    """Time the gateway's request path (``_invoke``) with a constant in-process model."""
    with tempfile.TemporaryDirectory() as tmp:
        issuer = DevIssuer(Path(tmp), issuer="https://idp", audience="app")
        verifier = VerifierConfig(
            issuer="https://idp",
            audience="app",
            jwks=JwksSource(path=issuer.jwks_path),
            claims=ClaimMapping(
                roles={"roles": {"invoker": {"invoker"}}},
                attributes={"entitlements": "entitlements"},
            ),
        )

        class _Constant:
            def predict(self, inputs: list[list[float]]) -> list[list[float]]:
                return [[0.1, 0.9]] * len(inputs)

        gateway = Gateway(
            _Constant(),
            ModelCard("bench", "b" * 64, frozenset({"phi"})),
            authenticate=authenticator(verifier),
            audit=AuditChain(MemorySink()),
            # One key sending back to back would (rightly) be throttled as a flood; the
            # detector still runs, only its limit is out of reach.
            monitor=Monitor(MldrConfig(flood_max=10**9, flood_cost=10**12)),
            config=GatewayConfig(key_rate=1e9, key_burst=1e9, global_rate=1e9, global_burst=1e9),
        )
        header = "Bearer " + issuer.mint("bench", roles=["invoker"], claims={"entitlements": "phi"})
        rng = np.random.default_rng(1)
        wall, cpu = [], []
        for i in range(n):
            body = InvokeBody(inputs=[rng.uniform(0, 16, 64).tolist()])
            started, cpu0 = time.perf_counter(), time.thread_time()
            response = handle_invoke(gateway, body, header)
            wall.append(time.perf_counter() - started)
            cpu.append(time.thread_time() - cpu0)
            if response.status_code != 200:
                msg = f"gateway bench request {i} answered {response.status_code}"
                raise RuntimeError(msg)
    w, c = _percentiles(wall), _percentiles(cpu)
    return {
        "p50": w["p50"],
        "p99": w["p99"],
        "cpu_p50": c["p50"],
        "cpu_p99": c["p99"],
        "queries": n,
    }


def main() -> None:
    """Run the scripted clients and write the results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer clients and queries")
    parser.add_argument("--benign", type=int, default=200)
    parser.add_argument("--attackers", type=int, default=5)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    if args.quick:
        args.benign, args.attackers, args.queries = 50, 2, 250
    load = os.getloadavg()[0]
    result = _run(args)
    result["load"] = load
    result["gateway_us"] = _gateway_overhead(200 if args.quick else 2_000)
    OUT.mkdir(exist_ok=True)
    (OUT / "mldr.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "mldr.md").write_text(_markdown(result))
    print(_markdown(result))


if __name__ == "__main__":
    main()
