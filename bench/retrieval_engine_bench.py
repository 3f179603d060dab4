"""Embedded filtered retrieval: Qdrant Edge (engine in process) against Qdrant local mode.

Writes bench/results/retrieval_engine.json and .md. Random unit vectors (dimension 384), one
care team of 100 per document, so a doctor's residual filter selects 1 %. Each engine is
queried through :class:`mamori.genai.AuthorizedRetriever` (the real Cedar residual filter,
compiled for the engine, then the per-hit Cedar re-check). Reported per engine: recall@10
against exact top-10 over the authorized set, unauthorized items returned, p50/p99 latency of
``search``, and how many hits the re-check had to drop (a correct compiled filter gives 0:
anything else means the engine returned items the policy forbids).

Usage: ``python bench/retrieval_engine_bench.py [--quick] [--n N] [--queries Q]
[--local-queries Q]`` (``--quick``: 10 000 vectors, 50 queries).
Local mode evaluates the filter in Python per point, so it gets fewer queries.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient, models

from mamori.audit import AuditChain, MemorySink
from mamori.genai import AuthorizedRetriever, Authorizer, ContextFactory, ConversationStore
from mamori.genai.edge import EdgeStore
from mamori.genai.hospital import HOSPITAL_CLAIMS, HOSPITAL_DOMAIN
from mamori.genai.ingestion import point_id
from mamori.identity import DevIssuer, JwksSource, VerifierConfig
from mamori.policy import PolicyEngine

DIM, K, TEAMS, BATCH = 384, 10, 100, 5_000
TARGET_P99_MS, TARGET_RECALL = 50.0, 0.99
OUT = Path(__file__).parent / "results"


def _payload(i: int, team: int) -> dict[str, Any]:
    acl = {"tenant": "t1", "patient_id": f"p{i}", "classification": "PHI"}
    return {"doc_id": f"d{i}", "acl": {**acl, "care_team": [f"dr-{team}"]}}


def _edge(directory: Path, vecs: np.ndarray, team: np.ndarray) -> tuple[EdgeStore, float]:
    start = time.perf_counter()
    store = EdgeStore.create(directory / "edge", DIM)
    fields = ("tenant", "patient_id", "classification", "care_team")
    store.index_keywords(f"acl.{f}" for f in fields)
    for s in range(0, len(vecs), BATCH):
        stop = min(len(vecs), s + BATCH)
        store.upsert(
            [
                (point_id(f"d{i}"), vecs[i].tolist(), _payload(i, int(team[i])))
                for i in range(s, stop)
            ]
        )
    store.optimize()
    return store, time.perf_counter() - start


def _local(vecs: np.ndarray, team: np.ndarray) -> tuple[QdrantClient, float]:
    start = time.perf_counter()
    client = QdrantClient(":memory:")
    client.create_collection(
        "b", vectors_config=models.VectorParams(size=DIM, distance=models.Distance.COSINE)
    )
    with warnings.catch_warnings():
        # Past 20,000 points local mode warns it is meant for small data: that is the point.
        warnings.filterwarnings("ignore", message="Local mode is not recommended")
        for s in range(0, len(vecs), BATCH):
            stop = min(len(vecs), s + BATCH)
            client.upsert(
                "b",
                points=models.Batch(
                    ids=[point_id(f"d{i}") for i in range(s, stop)],
                    vectors=vecs[s:stop].tolist(),
                    payloads=[_payload(i, int(team[i])) for i in range(s, stop)],
                ),
                wait=True,
            )
    return client, time.perf_counter() - start


def _measure(  # noqa: PLR0917 -- one run's inputs
    name: str,
    retriever: AuthorizedRetriever,
    ctx: Any,
    vecs: np.ndarray,
    allowed: np.ndarray,
    queries: int,
    load_s: float,
) -> dict[str, Any]:
    rng = np.random.default_rng(1)
    # Warm-up, not timed: the first search builds the principal's residual filter (cached per
    # principal and policy version after that) and touches the engine's pages once.
    for _ in range(3):
        retriever.search(ctx, rng.normal(size=DIM).tolist(), limit=K)
    recall, times = [], []
    unauthorized = 0
    for _ in range(queries):
        q = rng.normal(size=DIM).astype(np.float32)
        q /= np.linalg.norm(q)
        exact = set(np.argsort(-np.where(allowed, vecs @ q, -np.inf))[:K].tolist())
        start = time.perf_counter()
        hits = retriever.search(ctx, q.tolist(), limit=K)
        times.append((time.perf_counter() - start) * 1000)
        ids = {int(h.doc_id[1:]) for h in hits}
        unauthorized += sum(1 for i in ids if not allowed[i])
        recall.append(len(ids & exact) / K)
    return {
        "engine": name,
        "queries": queries,
        "load_and_index_seconds": round(load_s, 2),
        "recall_at_10": float(np.mean(recall)),
        "unauthorized_items": unauthorized,
        "recheck_dropped": retriever.recheck_dropped,
        "p50_ms": float(np.percentile(times, 50)),
        "p99_ms": float(np.percentile(times, 99)),
    }


def _verdict(r: dict[str, Any]) -> str:
    ok = (
        r["recall_at_10"] >= TARGET_RECALL
        and r["unauthorized_items"] == 0
        and r["recheck_dropped"] == 0
        and r["p99_ms"] < TARGET_P99_MS
    )
    return "PASS" if ok else "FAIL"


def main() -> int:
    """Run both engines and write the results."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--local-queries", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.n, args.queries, args.local_queries = 10_000, 50, 3
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(args.n, DIM)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    team = rng.integers(0, TEAMS, size=args.n)
    allowed = team == 7
    results = []
    with tempfile.TemporaryDirectory() as d:
        issuer = DevIssuer(Path(d) / "keys", issuer="https://idp", audience="app")
        config = VerifierConfig(
            issuer="https://idp",
            audience="app",
            jwks=JwksSource(path=issuer.jwks_path),
            claims=HOSPITAL_CLAIMS,
        )
        engine = PolicyEngine.packaged("hospital")
        authorizer = Authorizer(engine, ConversationStore.ephemeral(), AuditChain(MemorySink()))
        factory = ContextFactory(config, HOSPITAL_DOMAIN, authorizer.state)
        ctx = factory.from_token(issuer.mint("dr-7", roles=["doctor"], tenant="t1"))
        store, load_s = _edge(Path(d), vecs, team)
        edge = AuthorizedRetriever(store, "", authorizer)
        results.append(_measure("qdrant-edge", edge, ctx, vecs, allowed, args.queries, load_s))
        store.close()
        if args.local_queries:
            client, load_s = _local(vecs, team)
            local = AuthorizedRetriever(client, "b", authorizer)
            results.append(
                _measure("qdrant-local-mode", local, ctx, vecs, allowed, args.local_queries, load_s)
            )
    report = {
        "vectors": args.n,
        "dimension": DIM,
        "selectivity": float(allowed.mean()),
        "targets": {"recall_at_10": TARGET_RECALL, "p99_ms": TARGET_P99_MS},
        "machine": platform.platform(),
        "results": results,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "retrieval_engine.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [
        (
            f"# Embedded filtered retrieval, {args.n} vectors, dim {DIM}, "
            f"selectivity {report['selectivity']:.3%}"
        ),
        "",
        (
            "| engine | queries | load+index s | recall@10 | unauthorized | re-check dropped "
            "| p50 ms | p99 ms | targets |"
        ),
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {r['engine']} | {r['queries']} | {r['load_and_index_seconds']} | "
            f"{r['recall_at_10']:.3f} | {r['unauthorized_items']} | {r['recheck_dropped']} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {_verdict(r)} |"
            for r in results
        ),
        "",
    ]
    (OUT / "retrieval_engine.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
