"""The console's views, driven as a browser would: each backed by the lifecycle library."""

from __future__ import annotations

import csv
import io
import pickle

from sqlalchemy import update

from mamori.service.console import router as console_router
from mamori.store.models import AuditRow

from .helpers import csrf_of, sign_in


class _Reduce:
    """Unpickling this would run `true`; the tests only upload and scan the bytes."""

    def __reduce__(self):
        import os

        return (os.system, ("true",))


BENIGN = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)
MALICIOUS = pickle.dumps(_Reduce(), protocol=4)


def _other(n: int) -> bytes:
    return pickle.dumps({"n": n}, protocol=4)


def test_the_summary_counts_states_and_draws_server_side_svg_charts(browser, mint, upload):
    upload(BENIGN)
    upload(MALICIOUS, name="evil.pkl")
    sign_in(browser, mint("vera", "viewer"))
    page = browser.get("/console").text
    assert '<span class="num">2</span> artifacts' in page
    assert '<span class="num">1</span> waiting for approval' in page
    assert '<span class="num">1</span> blocked' in page
    assert page.count("<svg") == 5
    assert "Current scans by verdict: safe 1, unsafe 1" in page
    assert "Current scans by highest severity: critical 1" in page


def test_the_inventory_shows_state_severity_and_filters_by_verdict(browser, mint, upload):
    safe = upload(BENIGN, name="good.pkl")
    evil = upload(MALICIOUS, name="evil.pkl")
    sign_in(browser, mint("vera", "viewer"))
    everything = browser.get("/console/inventory").text
    assert safe[:12] in everything
    assert evil[:12] in everything
    assert 'class="sev sev-critical"' in everything
    unsafe_only = browser.get("/console/inventory", params={"verdict": "unsafe"}).text
    assert evil[:12] in unsafe_only
    assert safe[:12] not in unsafe_only
    assert "1-1 of 1" in unsafe_only


def test_the_inventory_pages_on_the_server(browser, mint, upload, monkeypatch):
    monkeypatch.setattr(console_router, "PAGE_SIZE", 2)
    digests = [upload(_other(i), name=f"m{i}.pkl") for i in range(5)]
    sign_in(browser, mint("vera", "viewer"))
    first = browser.get("/console/inventory").text
    last = browser.get("/console/inventory", params={"page": 3}).text
    assert "1-2 of 5" in first
    assert "Page 1 of 3" in first
    assert digests[4][:12] in first  # newest first
    assert digests[0][:12] in last
    assert digests[0][:12] not in first


def test_an_unknown_filter_value_is_a_422_naming_it(browser, mint):
    sign_in(browser, mint("vera", "viewer"))
    r = browser.get("/console/inventory", params={"state": "lost"})
    assert r.status_code == 422
    assert "invalid filter" in r.text


def test_the_csv_export_neutralises_cells_a_spreadsheet_would_run(browser, client, mint, app):
    r = client.post(
        "/v1/artifacts",
        params={"name": "m.pkl", "source": "=HYPERLINK(1)"},
        content=BENIGN,
        headers={"Authorization": f"Bearer {mint('ivan', 'importer')}"},
    )
    assert r.status_code == 201, r.text
    app.state.scanner.join()
    sign_in(browser, mint("vera", "viewer"))
    export = browser.get("/console/inventory.csv")
    assert export.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert rows[0]["names"] == "'=HYPERLINK(1):m.pkl"
    assert rows[0]["state"] == "safe"


def test_the_model_card_lists_detections_with_rule_cwe_atlas_and_location(browser, mint, upload):
    sha = upload(MALICIOUS, name="evil.pkl")
    sign_in(browser, mint("vera", "viewer"))
    card = browser.get(f"/console/artifacts/{sha}").text
    assert sha in card
    assert "MAM-PKL-001" in card
    assert "CWE-502" in card
    assert "AML.T0010" in card
    assert 'class="badge badge-unsafe"' in card
    assert "refused:" in card  # the gate's answer, with its reason


def test_an_unknown_artifact_is_a_404_page(browser, mint):
    sign_in(browser, mint("vera", "viewer"))
    r = browser.get("/console/artifacts/" + "0" * 64)
    assert r.status_code == 404
    assert "no artifact" in r.text


def test_the_importer_sees_approve_disabled_with_the_policy_reason(browser, mint, upload):
    sha = upload(BENIGN, by="ivan")
    sign_in(browser, mint("ivan", "importer", "approver"))
    card = browser.get(f"/console/artifacts/{sha}").text
    assert '<button type="submit" disabled aria-describedby="why-approve">Approve</button>' in card
    assert "Approve is not allowed:" in card


def test_an_approver_without_mfa_sees_approve_disabled(browser, mint, upload):
    sha = upload(BENIGN, by="ivan")
    sign_in(browser, mint("ana", "approver", mfa=False))
    card = browser.get(f"/console/artifacts/{sha}").text
    assert "Approve is not allowed:" in card


def test_a_read_only_api_token_sees_decisions_disabled_for_its_scope(browser, client, mint, upload):
    sha = upload(BENIGN, by="ivan")
    made = client.post(
        "/v1/admin/tokens",
        json={"name": "bot", "roles": ["approver"], "scopes": ["read"]},
        headers={"Authorization": f"Bearer {mint('root', 'admin')}"},
    ).json()
    sign_in(browser, made["token"])
    card = browser.get(f"/console/artifacts/{sha}").text
    assert "lacks the &#39;decide&#39; scope" in card
    r = browser.post(f"/console/artifacts/{sha}/approve", data={"csrf": csrf_of(card)})
    assert r.status_code == 403


def test_a_second_user_with_mfa_approves_and_the_decision_is_audited(
    browser, browser_factory, mint, upload
):
    sha = upload(BENIGN, by="ivan")
    approver = browser_factory()
    sign_in(approver, mint("ana", "approver"))
    card = approver.get(f"/console/artifacts/{sha}").text
    r = approver.post(
        f"/console/artifacts/{sha}/approve",
        data={"csrf": csrf_of(card), "reason": "reviewed the weights"},
        follow_redirects=False,
    )
    assert r.status_code == 303
    after = approver.get(f"/console/artifacts/{sha}").text
    assert 'class="badge badge-approved"' in after
    assert "reviewed the weights" in after
    assert "allowed:" in after  # the gate now lets it deploy
    sign_in(browser, mint("root", "admin"))
    audit = browser.get("/console/audit").text
    assert "approve" in audit
    assert "safe -&gt; approved" in audit


def test_the_audit_view_reports_a_verified_chain(browser, mint, upload):
    upload(BENIGN)
    sign_in(browser, mint("root", "admin"))
    page = browser.get("/console/audit", params={"verify": "1"}).text
    assert "Chain verified: all" in page


def test_the_audit_view_verifies_the_chain_only_when_asked(browser, mint, upload, app):
    upload(BENIGN)
    with app.state.runtime.store.write() as session:
        session.execute(update(AuditRow).where(AuditRow.seq == 1).values(decision="allow!"))
    sign_in(browser, mint("root", "admin"))
    page = browser.get("/console/audit").text
    assert "Verify the whole chain" in page
    assert "Chain verif" not in page


def test_the_audit_view_reports_a_tampered_chain(browser, mint, upload, app):
    upload(BENIGN)
    with app.state.runtime.store.write() as session:
        session.execute(update(AuditRow).where(AuditRow.seq == 1).values(decision="allow!"))
    sign_in(browser, mint("root", "admin"))
    page = browser.get("/console/audit", params={"verify": "1"}).text
    assert "Chain verification FAILED" in page
    assert "record 1 was altered" in page


def test_the_audit_view_is_refused_to_non_admins_by_the_policies(browser, mint):
    sign_in(browser, mint("vera", "viewer"))
    r = browser.get("/console/audit")
    assert r.status_code == 403
    assert "admin denied" in r.text


def test_the_csv_export_is_refused_as_a_page_when_the_policies_deny_viewing(browser, mint):
    sign_in(browser, mint("nobody"))
    r = browser.get("/console/inventory.csv")
    assert r.status_code == 403
    assert r.headers["content-type"].startswith("text/html")
