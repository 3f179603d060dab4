"""Issue 14 item 6: 401s and network 403s are counted and audited, at a bounded rate.

Before the fix neither left any trace in the audit log.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, Counter

from mamori.config import load_settings
from mamori.service import ScanMode, create_app
from mamori.service.refusals import MAX_SOURCES, OTHER_SOURCES, RefusalLog, RefusalReason
from mamori.store import Store
from mamori.store.auditlog import iter_audit

from .conftest import LOOPBACK, bearer


def _refusal_records(store):
    return [r for r in iter_audit(store) if r.action.startswith("refused-")]


def _count(app, reason: str, group: str) -> float:
    value = app.state.metrics.registry.get_sample_value(
        "mamori_auth_refusals_total", {"reason": reason, "group": group}
    )
    return value or 0.0


def test_a_flood_of_bad_tokens_is_counted_each_and_audited_once(client, app):
    for i in range(300):
        r = client.get("/v1/artifacts", headers=bearer(f"not-a-jwt-{i}"))
        assert r.status_code == 401
    assert client.get("/v1/artifacts").status_code == 401  # no header at all
    assert _count(app, "unauthenticated", "api") == 301
    assert app.state.refusals.flush() == 1
    (record,) = _refusal_records(app.state.runtime.store)
    assert record.principal == f"anonymous|{LOOPBACK[0]}"
    assert record.action == "refused-unauthenticated"
    assert record.decision == "deny"
    assert record.reason.startswith("301 request(s) refused within 60s; first: malformed token")


def test_network_refusals_are_counted_and_audited_with_the_allow_list(tmp_path, database_url, mint):
    settings = load_settings(
        data_dir=tmp_path / "data", database_url=database_url, allow_api=("10.0.0.0/8",)
    )
    app = create_app(settings, scan_mode=ScanMode.INLINE)
    with TestClient(app, client=LOOPBACK) as client:
        for _ in range(50):
            assert client.get("/v1/artifacts").status_code == 403
        assert _count(app, "network", "api") == 50
        assert app.state.refusals.flush() == 1
        (record,) = _refusal_records(app.state.runtime.store)
    assert record.action == "refused-network"
    assert record.policy_ids == ("allow-api",)
    assert record.reason.startswith("50 request(s) refused")


def test_refusals_still_pending_are_audited_when_the_service_stops(tmp_path, database_url):
    settings = load_settings(data_dir=tmp_path / "data", database_url=database_url)
    app = create_app(settings, scan_mode=ScanMode.INLINE)
    with TestClient(app, client=LOOPBACK) as client:
        client.get("/v1/artifacts", headers=bearer("x"))
    store = Store(settings.resolved_database_url)
    assert len(_refusal_records(store)) == 1
    store.dispose()


def test_an_authenticated_request_is_not_a_refusal(client, app, mint):
    assert client.get("/v1/artifacts", headers=bearer(mint("v", "viewer"))).status_code == 200
    assert app.state.refusals.flush() == 0


@pytest.fixture
def log(database_url):
    store = Store(database_url)
    store.migrate()
    counter = Counter("t_refusals", "t", ["reason", "group"], registry=CollectorRegistry())
    yield RefusalLog(store, counter, interval_seconds=1), store
    store.dispose()


def test_many_source_addresses_cannot_multiply_the_audit_records(log):
    refusals, store = log
    for i in range(5000):
        refusals.record(
            RefusalReason.UNAUTHENTICATED, source=f"2001:db8::{i:x}", group="api", detail="x"
        )
    assert refusals.flush() == MAX_SOURCES + 1
    records = _refusal_records(store)
    folded = [r for r in records if r.principal == f"anonymous|{OTHER_SOURCES}"]
    assert len(folded) == 1
    assert folded[0].reason.startswith(f"{5000 - MAX_SOURCES} request(s)")


def test_each_interval_writes_at_most_one_record_per_reason_and_source(log):
    refusals, store = log
    for _ in range(3):
        for _ in range(100):
            refusals.record(RefusalReason.NETWORK, source="203.0.113.9", group="admin", detail="x")
            refusals.record(
                RefusalReason.UNAUTHENTICATED, source="203.0.113.9", group="api", detail="y"
            )
        assert refusals.flush() == 2
    assert len(_refusal_records(store)) == 6


def test_the_audited_detail_is_escaped(log):
    refusals, store = log
    refusals.record(
        RefusalReason.UNAUTHENTICATED, source="198.51.100.1", group="api", detail="bad\x1b[2J"
    )
    refusals.flush()
    (record,) = _refusal_records(store)
    assert "\x1b" not in record.reason
