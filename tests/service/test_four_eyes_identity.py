"""Issue 14 item 1: four eyes compares people (issuer, folded subject), not spellings.

Before the fix an importer ``ivan`` and an approver ``Ivan``, ``" ivan "`` or ``"ivan\\u200b"``
of the same issuer could approve the import (200, "approved by Ivan").
"""

from __future__ import annotations

import pickle

import pytest

from mamori.store.auditlog import iter_audit

from .conftest import bearer

BENIGN = pickle.dumps({"weights": [1.0]}, protocol=4)


@pytest.fixture
def imported(client, upload):
    return upload(BENIGN, by="ivan")


def test_an_approver_spelling_the_importer_in_another_case_is_refused(client, mint, imported):
    r = client.post(f"/v1/artifacts/{imported}/approve", headers=bearer(mint("Ivan", "approver")))
    assert r.status_code == 403
    assert r.json()["policy_ids"] == ["four-eyes"]
    assert (
        client.get(f"/v1/artifacts/{imported}", headers=bearer(mint("v", "viewer"))).json()["state"]
        == "safe"
    )


def test_a_fullwidth_spelling_of_the_importer_is_refused(client, mint, imported):
    r = client.post(
        f"/v1/artifacts/{imported}/approve",
        headers=bearer(mint("\uff49\uff56\uff41\uff4e", "approver")),
    )
    assert r.status_code == 403
    assert r.json()["policy_ids"] == ["four-eyes"]


@pytest.mark.parametrize("subject", [" ivan ", "ivan\u200b", "\u202eivan", "iv\x1ban"])
def test_an_approver_whose_subject_can_pass_for_the_importer_is_not_authenticated(
    client, mint, imported, subject
):
    r = client.post(f"/v1/artifacts/{imported}/approve", headers=bearer(mint(subject, "approver")))
    assert r.status_code == 401
    assert "sub" in r.json()["detail"]
    # The refusal names the character by its escape; the raw character never comes back.
    assert subject.strip() == subject or "whitespace" in r.json()["detail"]
    assert "\u200b" not in r.text
    assert "\x1b" not in r.text


def test_another_person_may_approve_and_the_importer_keeps_its_issuer(client, app, mint, imported):
    r = client.post(f"/v1/artifacts/{imported}/approve", headers=bearer(mint("alice", "approver")))
    assert r.status_code == 200
    assert r.json()["state"] == "approved"
    issuer = app.state.runtime.verifier.issuer
    records = [r for r in iter_audit(app.state.runtime.store) if r.resource == imported]
    assert records[0].action == "import"
    assert records[0].principal == f"{issuer}|ivan"
