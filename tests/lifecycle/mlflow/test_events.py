"""Delivery processing: one worker at a time works a delivery (a lease in its row)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from mamori.config import load_settings
from mamori.lifecycle.mlflow.events import build_integration, record_delivery
from mamori.lifecycle.mlflow.webhook import Delivery, parse_event
from mamori.service.runtime import build_runtime
from mamori.store.models_mlflow import DeliveryRow

pytest.importorskip("mlflow")


@pytest.fixture
def workers(tmp_path, database_url):
    settings = load_settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        mlflow_webhook_secret="s",
        mlflow_tracking_uri="http://127.0.0.1:9",  # never contacted: _act is replaced below
    )
    lifecycle = build_runtime(settings).lifecycle
    body = {"entity": "registered_model", "action": "created", "data": {"name": "m"}}
    kind, data = parse_event(json.dumps(body).encode())
    assert record_delivery(lifecycle.store, Delivery("d-1", 0, b""), kind, data)
    # Two workers (two processes in production) over the same store.
    return build_integration(settings, lifecycle), build_integration(settings, lifecycle)


def test_a_delivery_claimed_by_one_worker_is_not_worked_by_another(workers, monkeypatch):
    first, second = workers
    acted: list[str] = []

    def first_act(*_):
        acted.append("first")
        second.process("d-1")  # the other worker meets the same delivery meanwhile

    monkeypatch.setattr(first, "_act", first_act)
    monkeypatch.setattr(second, "_act", lambda *_: acted.append("second"))
    first.process("d-1")
    assert acted == ["first"]
    assert first.pending() == []
    second.process("d-1")  # done: nothing left to work
    assert acted == ["first"]


def test_a_claim_whose_worker_died_is_taken_over_after_its_lease(workers, monkeypatch):
    first, second = workers
    acted: list[str] = []
    monkeypatch.setattr(second, "_act", lambda *_: acted.append("second"))
    # A worker claimed it and died: its lease is in the row and still running.
    with first.lifecycle.store.write() as session:
        session.execute(
            update(DeliveryRow).values(claimed_until=datetime.now(UTC) + timedelta(minutes=5))
        )
    assert not second.process("d-1")
    assert acted == []
    assert second.pending() == ["d-1"]
    with first.lifecycle.store.write() as session:
        session.execute(
            update(DeliveryRow).values(claimed_until=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert second.process_pending() == 1
    assert acted == ["second"]
    assert second.pending() == []
