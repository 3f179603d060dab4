"""MLflow integration benchmark against a real ``mlflow server`` (mamori-gate plugin).

Measures, on this machine:
1. webhook -> verdict latency (p50/p95): a model version is created in MLflow; the time until
   every artifact bound to it has a finished scan in mamori's store (MLflow delivery, HMAC
   check, registry lookup, artifact download, quarantine, scan);
2. gate decision latency (p50/p99): the plugin's question to mamori (``GateClient.ask``:
   HTTP to ``/v1/gate/binding``, store lookups, audit write), plus, for reference, a whole
   alias-set request through MLflow (basic-auth + plugin + MLflow's own write);
3. sweep and rescan of N registered versions with 1 and 2 worker processes (each version is
   a distinct small pickle, so every version is a real download + hash + scan; the rescan
   re-downloads and re-hashes every version, scans are already done under the ruleset).

Writes bench/results/mlflow.json and bench/results/mlflow.md.
Usage: ``python bench/mlflow_bench.py [--quick] [--versions N] [--latency K] [--gate G]``.
"""

# ruff: noqa: PLC0415, PLR0915 - a standalone script: heavy imports are deferred to the phase
# that needs them, and main() is one linear measurement sequence.

from __future__ import annotations

import argparse
import base64
import json
import multiprocessing
import os
import pickle
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

warnings.filterwarnings("ignore")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import httpx  # noqa: E402
import uvicorn  # noqa: E402
from sqlalchemy import select  # noqa: E402

from mamori.config import load_settings  # noqa: E402
from mamori.identity.apitokens import Scope  # noqa: E402
from mamori.lifecycle.factory import build_lifecycle  # noqa: E402
from mamori.store.apitokens import ApiTokens  # noqa: E402
from mamori.store.models import ArtifactRow, BindingRow, ScanRow, ScanStatus  # noqa: E402
from mamori.store.models_mlflow import MlflowVersionRow, VersionStatus  # noqa: E402

ADMIN = ("admin", "Adm1n-pass-for-bench!")
SECRET = "whsec-bench-0123456789"
RESULTS = Path(__file__).parent / "results"


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_mlflow(root: Path, gate_url: str, gate_token: str) -> tuple[str, subprocess.Popen]:
    port = _port()
    ini = root / "auth.ini"
    ini.write_text(
        f"[mlflow]\ndefault_permission = EDIT\ndatabase_uri = sqlite:///{root / 'auth.db'}\n"
        f"admin_username = {ADMIN[0]}\nadmin_password = {ADMIN[1]}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "auth_cache_ttl_seconds = 60\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAMORI_", "MLFLOW_"))}
    env |= {
        "MLFLOW_AUTH_CONFIG_PATH": str(ini),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "bench",
        "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY": base64.urlsafe_b64encode(b"b" * 32).decode(),
        "MLFLOW_WEBHOOK_ALLOWED_SCHEMES": "http,https",
        "MLFLOW_WEBHOOK_ALLOW_PRIVATE_IPS": "true",
        "MLFLOW_WEBHOOK_CACHE_TTL": "1",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MAMORI_GATE_URL": gate_url,
        "MAMORI_GATE_TOKEN": gate_token,
    }
    log = (root / "mlflow.log").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port),
            "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
            "--artifacts-destination", str(root / "artifacts"),
            "--app-name", "mamori-gate", "--workers", "1",
        ],
        env=env, cwd=root, stdout=log, stderr=log,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while True:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit((root / "mlflow.log").read_text()[-3000:])
        time.sleep(0.5)


def start_mamori(settings):
    from mamori.service import ScanMode, create_app

    app = create_app(settings, scan_mode=ScanMode.INLINE)
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=settings.port, log_level="warning")
    )
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    return app, server


def start_serve(settings, port: int) -> subprocess.Popen:
    """``mamori serve`` in its own process over the same store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")}
    env |= {
        "MAMORI_DATA_DIR": str(settings.data_dir),
        "MAMORI_PORT": str(port),
        "MAMORI_MLFLOW_WEBHOOK_SECRET": SECRET,
    }
    mamori = Path(sys.executable).with_name("mamori")
    log = (settings.data_dir / "serve.log").open("wb")  # its JSON access log: server-side times
    proc = subprocess.Popen(
        [str(mamori), "serve", "--scans", "inline"],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit("mamori serve did not become ready")


def _served_ms(log: Path, route: str) -> list[float]:
    """Latencies the server itself measured for ``route`` (from its access log lines)."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("route") == route:
            found.append(float(entry["latency_ms"]))
    return found or [float("nan")]


def make_versions(client, n: int, tmp: Path) -> str:
    """N versions of one model, each a distinct small pickle plus an MLmodel file."""
    name = "bench-sweep"
    client.create_registered_model(name)
    exp = client.create_experiment(f"bench-{time.time_ns()}")
    run = client.create_run(exp)
    for i in range(n):
        folder = tmp / f"v{i}"
        folder.mkdir(parents=True)
        (folder / "model.pkl").write_bytes(pickle.dumps({"weights": [float(i)] * 64, "i": i}))
        (folder / "MLmodel").write_text(f"flavors: {{}}\nbench_index: {i}\n")
        client.log_artifacts(run.info.run_id, str(folder), artifact_path=f"m{i}")
        client.create_model_version(name, f"{run.info.artifact_uri}/m{i}", run_id=run.info.run_id)
    return name


# --- sweep workers (one process each) -------------------------------------------------------

_WORKER: dict = {}


def _init_worker(settings_kwargs: dict) -> None:
    warnings.filterwarnings("ignore")
    from mamori.lifecycle.mlflow.events import build_integration

    settings = load_settings(**settings_kwargs)
    lifecycle = build_lifecycle(settings, migrate=False)
    _WORKER["integration"] = build_integration(settings, lifecycle)


def _resolve_and_scan(job: tuple[str, str, bool]) -> int:
    name, version, force = job
    integration = _WORKER["integration"]
    result = integration.resolver.resolve(name, version, force=force)
    for sha in result.digests:
        integration.lifecycle.run_scan(sha)
    return len(result.digests)


def _ping(_: int) -> int:
    time.sleep(0.3)  # long enough that every worker takes one: all initializers have run
    return os.getpid()


def run_sweep(settings_kwargs: dict, workers: int) -> dict:
    from mamori.lifecycle.mlflow.events import build_integration

    settings = load_settings(**settings_kwargs)
    lifecycle = build_lifecycle(settings)  # migrates the fresh store
    integration = build_integration(settings, lifecycle)
    timings = {}
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker, initargs=(settings_kwargs,)) as pool:
        pool.map(_ping, range(workers * 2), chunksize=1)  # worker start-up is not sweep time
        for label, rescan in (("sweep", False), ("rescan", True)):
            start = time.perf_counter()
            plan = integration.plan(rescan=rescan)
            jobs = [(n, v, rescan) for n, v in plan.to_resolve]
            files = sum(pool.map(_resolve_and_scan, jobs, chunksize=4))
            for target in plan.protected:
                integration.guard.check(target, origin="sweep")
            timings[label] = {
                "seconds": round(time.perf_counter() - start, 2),
                "versions": len(jobs),
                "files": files,
            }
    with lifecycle.store.read() as session:
        resolved = session.execute(
            select(MlflowVersionRow).where(MlflowVersionRow.status == VersionStatus.RESOLVED)
        ).all()
        unscanned = session.execute(
            select(ArtifactRow.id).where(
                ArtifactRow.id.not_in(
                    select(ScanRow.artifact_id).where(ScanRow.status == ScanStatus.DONE)
                )
            )
        ).all()
    timings["resolved_versions"] = len(resolved)
    timings["artifacts_without_verdict"] = len(unscanned)
    return timings


# --- latency --------------------------------------------------------------------------------


def verdict_done(store, name: str, version: str) -> bool:
    with store.read() as session:
        files = session.execute(
            select(MlflowVersionRow.files).where(
                MlflowVersionRow.name == name,
                MlflowVersionRow.version == version,
                MlflowVersionRow.status == VersionStatus.RESOLVED,
            )
        ).scalar()
        rows = session.execute(
            select(BindingRow.member_path, ScanRow.status)
            .join(ArtifactRow, BindingRow.artifact_id == ArtifactRow.id)
            .outerjoin(ScanRow, ScanRow.artifact_id == ArtifactRow.id)
            .where(BindingRow.name == name, BindingRow.version == version)
        ).all()
    return bool(
        files and len({m for m, _ in rows}) == files and all(s is ScanStatus.DONE for _, s in rows)
    )


def measure_gate(app, settings, token, mlflow_url: str, n: int) -> dict:
    """Gate decisions: plugin client over HTTP, in process, and whole MLflow requests."""
    results: dict = {}
    store = app.state.runtime.store
    from mamori.identity.principal import Principal
    from mamori.lifecycle.mlflow.gate_plugin import GateClient, GateConfig
    from mamori.store.models import ApprovalDecision

    approver = Principal("paula", "bench", "", frozenset({"approver"}), {"mfa": "true"})
    lifecycle = app.state.runtime.lifecycle
    for sha in {s for (s,) in _digests(store, "bench-latency", "1")}:
        lifecycle.decide(approver, sha, ApprovalDecision.APPROVED)
    # What the plugin reads in the MLflow server and sends with each question.
    from mamori.lifecycle.mlflow.events import build_integration

    facts = build_integration(settings, lifecycle).resolver.facts("bench-latency", "1")
    assert not isinstance(facts, str), facts
    # The gate is asked of a separate `mamori serve` process, as in production: a server
    # on a thread of this process would share the GIL with the client being timed.
    serve_port = _port()
    serve = start_serve(settings, serve_port)
    gate = GateClient(GateConfig(f"http://127.0.0.1:{serve_port}",
                                 token.secret, 2.0, ("production",)))  # fmt: skip
    gate_times = {"allow": [], "deny": []}
    for i in range(n):
        version = "1" if i % 2 == 0 else "999"
        start = time.perf_counter()
        verdict = gate.ask(name="bench-latency", version=version, target="production",
                           actor="bench", current=facts)  # fmt: skip
        gate_times["allow" if verdict.allowed else "deny"].append(
            (time.perf_counter() - start) * 1000
        )
    everything = gate_times["allow"] + gate_times["deny"]
    server_side = _served_ms(settings.data_dir / "serve.log", "/v1/gate/binding")
    results["gate_decision_server_side_ms"] = {
        "n": len(server_side),
        "p50": round(statistics.median(server_side), 2),
        "p99": round(_pct(server_side, 0.99), 2),
    }
    results["gate_decision_ms"] = {
        "n": len(everything),
        "allowed": len(gate_times["allow"]),
        "p50": round(statistics.median(everything), 2),
        "p99": round(_pct(everything, 0.99), 2),
    }
    from mamori.lifecycle.mlflow.gate import decide_promotion

    local = []
    for i in range(n):
        start = time.perf_counter()
        decide_promotion(
            lifecycle,
            name="bench-latency",
            version="1" if i % 2 == 0 else "999",
            target="production",
            actor="bench",
            current=facts,
        )
        local.append((time.perf_counter() - start) * 1000)
    results["gate_decision_in_process_ms"] = {
        "n": len(local),
        "p50": round(statistics.median(local), 2),
        "p99": round(_pct(local, 0.99), 2),
    }
    full = []
    for _ in range(min(50, n)):
        start = time.perf_counter()
        r = httpx.post(
            f"{mlflow_url}/api/2.0/mlflow/registered-models/alias",
            json={"name": "bench-latency", "alias": "production", "version": "1"},
            auth=ADMIN,
            timeout=30,
        )
        full.append(((time.perf_counter() - start) * 1000, r.status_code))
    results["alias_request_through_mlflow_ms"] = {
        "n": len(full),
        "status_codes": sorted({c for _, c in full}),
        "p50": round(statistics.median(t for t, _ in full), 1),
        "p99": round(_pct([t for t, _ in full], 0.99), 1),
    }
    serve.terminate()
    serve.wait(30)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--versions", type=int, default=1000)
    parser.add_argument("--latency", type=int, default=20)
    parser.add_argument("--gate", type=int, default=300)
    parser.add_argument("--quick", action="store_true", help="50 versions, 5 latency samples")
    args = parser.parse_args()
    if args.quick:
        args.versions, args.latency = 50, 5

    root = Path(tempfile.mkdtemp(prefix="mamori-mlflow-bench-"))
    mamori_port = _port()
    base = {
        "data_dir": root / "mamori",
        "port": mamori_port,
        "mlflow_webhook_secret": SECRET,
    }
    settings0 = load_settings(**base)
    lifecycle0 = build_lifecycle(settings0)
    token = ApiTokens(lifecycle0.store).create(
        name="gate", subject="mlflow-gate", roles=(), scopes=(Scope.GATE,), created_by="bench"
    )
    mlflow_url, proc = start_mlflow(root, f"http://127.0.0.1:{mamori_port}", token.secret)
    os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = ADMIN
    os.environ["MLFLOW_TRACKING_URI"] = mlflow_url
    from mlflow.tracking import MlflowClient

    client = MlflowClient(mlflow_url)
    results: dict = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_at_start": os.getloadavg(),
    }
    try:
        # 3. sweep + rescan (before any webhook exists, so only the sweep sees these versions)
        t0 = time.perf_counter()
        make_versions(client, args.versions, root / "src")
        results["setup_seconds"] = round(time.perf_counter() - t0, 1)
        sweep = {}
        for workers in (1, 2):
            kwargs = base | {
                "data_dir": root / f"sweep-{workers}",
                "mlflow_tracking_uri": mlflow_url,
            }
            sweep[f"workers_{workers}"] = run_sweep(kwargs, workers)
        for label in ("sweep", "rescan"):
            one = sweep["workers_1"][label]["seconds"]
            two = sweep["workers_2"][label]["seconds"]
            sweep[f"{label}_speedup_2_vs_1"] = round(one / two, 2) if two else None
        results["sweep"] = {"versions": args.versions, **sweep}

        # 1. webhook -> verdict latency
        settings = load_settings(**base, mlflow_tracking_uri=mlflow_url)
        app, server = start_mamori(settings)
        from mamori.lifecycle.mlflow.connect import connect

        connect(
            client,
            url=f"http://127.0.0.1:{mamori_port}/v1/hooks/mlflow",
            secret=SECRET,
            encryption_key_fixed=True,
        )
        import mlflow.sklearn
        from sklearn.linear_model import LogisticRegression

        model = LogisticRegression().fit([[0.0], [1.0], [2.0], [3.0]], [0, 0, 1, 1])
        info = mlflow.sklearn.log_model(model, name="model", pip_requirements=["scikit-learn"])
        client.create_registered_model("bench-latency")
        store = app.state.runtime.store
        latencies = []
        for _ in range(args.latency):
            start = time.perf_counter()
            mv = client.create_model_version(
                "bench-latency", info.model_uri, model_id=info.model_id
            )
            while not verdict_done(store, "bench-latency", str(mv.version)):
                if time.perf_counter() - start > 60:
                    break
                time.sleep(0.01)
            latencies.append(time.perf_counter() - start)
        results["webhook_to_verdict_seconds"] = {
            "n": len(latencies),
            "p50": round(statistics.median(latencies), 3),
            "p95": round(_pct(latencies, 0.95), 3),
            "max": round(max(latencies), 3),
            "files_per_version": 5,
        }

        # 2. gate decisions
        results |= measure_gate(app, settings, token, mlflow_url, args.gate)
        server.should_exit = True
    finally:
        proc.terminate()
        proc.wait(30)
    results["load_average_at_end"] = os.getloadavg()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "mlflow.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / "mlflow.md").write_text(_markdown(results))
    print(json.dumps(results, indent=2))


def _digests(store, name, version):
    with store.read() as session:
        return session.execute(
            select(ArtifactRow.sha256)
            .join(BindingRow, BindingRow.artifact_id == ArtifactRow.id)
            .where(BindingRow.name == name, BindingRow.version == version)
        ).all()


def _markdown(r: dict) -> str:
    s = r["sweep"]
    w = r["webhook_to_verdict_seconds"]
    g = r["gate_decision_ms"]
    a = r["alias_request_through_mlflow_ms"]
    lines = [
        "# MLflow integration benchmark",
        "",
        (
            f"Machine: {r['machine']['cpus']} CPUs, Python {r['machine']['python']}; load "
            f"average {r['load_average_at_start'][0]:.1f} at start, "
            f"{r['load_average_at_end'][0]:.1f} at the end."
        ),
        "",
        "| measure | result | target |",
        "|---|---|---|",
        (
            f"| webhook -> verdict, small sklearn model ({w['n']} versions) | p50 {w['p50']} s, "
            f"p95 {w['p95']} s | p95 < 2 s |"
        ),
        (
            f"| gate decision (plugin client -> `mamori serve` over HTTP, {g['n']} calls) "
            f"| p50 {g['p50']} ms, p99 {g['p99']} ms | p99 < 10 ms |"
        ),
        (
            "| same, as timed by the server (auth, store lookups, audit write, response) | "
            f"p50 {r['gate_decision_server_side_ms']['p50']} ms, "
            f"p99 {r['gate_decision_server_side_ms']['p99']} ms | |"
        ),
        (
            "| gate decision in process (store lookups + audit write) | "
            f"p50 {r['gate_decision_in_process_ms']['p50']} ms, "
            f"p99 {r['gate_decision_in_process_ms']['p99']} ms | |"
        ),
        (
            f"| whole alias-set request through MLflow ({a['n']}) | p50 {a['p50']} ms, "
            f"p99 {a['p99']} ms | (reference) |"
        ),
    ]
    for label in ("sweep", "rescan"):
        one, two = s["workers_1"][label], s["workers_2"][label]
        lines.append(
            f"| {label} of {s['versions']} versions | 1 worker {one['seconds']} s, 2 workers "
            f"{two['seconds']} s, speed-up {s[f'{label}_speedup_2_vs_1']}x | report |"
        )
    lines += [
        "",
        (
            f"Sweep/rescan: {s['versions']} versions, each a distinct small pickle plus an "
            "MLmodel file, so every version is a real listing, download, hash and scan. Each "
            "version costs ~6 requests to the single MLflow server worker (get version, "
            "registered model, download URI, listing, 2 downloads) plus SQLite write "
            "transactions; the MLflow server, the store and mamori's workers share the 2 "
            "cores, which bounds the speed-up of a second worker."
        ),
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
