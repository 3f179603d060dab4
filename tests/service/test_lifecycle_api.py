"""The lifecycle through the API: upload, scan, four eyes, override, gate, audit."""

from __future__ import annotations

import json
import pickle

from mamori.audit import AuditRecord, verify_chain


class _Reduce:
    """Unpickling this would run `true`; the tests only ever upload and scan the bytes."""

    def __reduce__(self):
        import os

        return (os.system, ("true",))


BENIGN = pickle.dumps({"weights": [1.0, 2.0], "name": "tiny"}, protocol=4)
MALICIOUS = pickle.dumps(_Reduce(), protocol=4)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _audit(client, mint) -> list[AuditRecord]:
    r = client.get("/v1/admin/audit", headers=bearer(mint("root", "admin")))
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("application/x-ndjson")
    return [AuditRecord.from_json(json.loads(line)) for line in r.text.splitlines()]


def test_an_upload_is_quarantined_scanned_and_bound_to_its_name(client, upload, mint):
    sha = upload(BENIGN, name="tiny.pkl")
    r = client.get(f"/v1/artifacts/{sha}", headers=bearer(mint("vera", "viewer")))
    body = r.json()
    assert body["state"] == "safe"
    assert body["latest_scan"]["verdict"] == "safe"
    assert body["bindings"][0]["name"] == "tiny.pkl"


def test_an_upload_answers_201_with_a_location(client, mint):
    r = client.post(
        "/v1/artifacts?name=m.pkl", content=BENIGN, headers=bearer(mint("ivan", "importer"))
    )
    assert r.status_code == 201
    assert r.headers["location"] == f"/v1/artifacts/{r.json()['sha256']}"


def test_a_multipart_upload_takes_its_name_from_the_file_part(client, mint, app):
    r = client.post(
        "/v1/artifacts",
        files={"file": ("dir/evil.pkl", MALICIOUS, "application/octet-stream")},
        data={"comment": "ignored"},
        headers=bearer(mint("ivan", "importer")),
    )
    assert r.status_code == 201, r.text
    assert r.json()["bindings"][0]["name"] == "evil.pkl"
    app.state.scanner.join()
    view = client.get(f"/v1/artifacts/{r.json()['sha256']}", headers=bearer(mint("v", "viewer")))
    assert view.json()["state"] == "unsafe"


def test_a_multipart_upload_without_a_file_part_is_a_400(client, mint):
    r = client.post(
        "/v1/artifacts", files={"other": ("x", b"abc")}, headers=bearer(mint("ivan", "importer"))
    )
    assert r.status_code == 400
    assert "'file' part" in r.json()["detail"]


def test_a_raw_upload_without_a_name_is_refused_with_the_reason(client, mint):
    r = client.post("/v1/artifacts", content=BENIGN, headers=bearer(mint("ivan", "importer")))
    assert r.status_code == 422
    assert "name" in r.json()["detail"]


def test_an_upload_over_the_size_cap_is_a_413_and_stores_nothing(settings, mint, issuer):
    from fastapi.testclient import TestClient

    from mamori.config import load_settings
    from mamori.service import ScanMode, create_app

    small = load_settings(data_dir=settings.data_dir, max_upload_bytes=1024)
    app = create_app(small, scan_mode=ScanMode.INLINE)
    with TestClient(app, client=("127.0.0.1", 1)) as client:
        headers = bearer(mint("ivan", "importer"))
        declared = client.post("/v1/artifacts?name=big", content=b"x" * 2048, headers=headers)
        assert declared.status_code == 413
        assert "1024-byte limit" in declared.json()["detail"]

        def chunks():
            for _ in range(4):
                yield b"y" * 512

        streamed = client.post("/v1/artifacts?name=big", content=chunks(), headers=headers)
        assert streamed.status_code == 413
        listing = client.get("/v1/artifacts", headers=bearer(mint("v", "viewer")))
        assert listing.json()["total"] == 0
    leftovers = [p for p in small.blob_dir.rglob("*") if p.is_file()]
    assert leftovers == []


def test_a_viewer_may_not_upload(client, mint):
    r = client.post("/v1/artifacts?name=m", content=BENIGN, headers=bearer(mint("v", "viewer")))
    assert r.status_code == 403
    assert r.json()["policy_ids"] == []
    assert "import denied" in r.json()["detail"]


def test_four_eyes_the_importer_cannot_approve_even_as_approver(client, mint):
    token = mint("ivan", "importer", "approver")
    r = client.post("/v1/artifacts?name=m.pkl", content=BENIGN, headers=bearer(token))
    sha = r.json()["sha256"]
    client.app.state.scanner.join()
    denied = client.post(f"/v1/artifacts/{sha}/approve", headers=bearer(token))
    assert denied.status_code == 403
    assert denied.json()["policy_ids"] == ["four-eyes"]
    approved = client.post(
        f"/v1/artifacts/{sha}/approve", headers=bearer(mint("alice", "approver"))
    )
    assert approved.status_code == 200
    assert approved.json()["state"] == "approved"


def test_approving_needs_mfa(client, upload, mint):
    sha = upload(BENIGN)
    r = client.post(
        f"/v1/artifacts/{sha}/approve", headers=bearer(mint("a", "approver", mfa=False))
    )
    assert r.status_code == 403
    assert "mfa-required" in r.json()["policy_ids"]


def test_an_unsafe_artifact_cannot_be_approved(client, upload, mint):
    sha = upload(MALICIOUS)
    r = client.post(f"/v1/artifacts/{sha}/approve", headers=bearer(mint("alice", "approver")))
    assert r.status_code == 403
    assert r.json()["policy_ids"] == ["approve-needs-safe"]


def test_an_override_without_a_reason_is_refused_and_the_refusal_audited(client, upload, mint):
    sha = upload(MALICIOUS)
    r = client.post(
        f"/v1/artifacts/{sha}/override",
        json={"reason": "  "},
        headers=bearer(mint("root", "admin")),
    )
    assert r.status_code == 403
    assert r.json()["policy_ids"] == ["override-needs-admin-and-reason"]
    denials = [a for a in _audit(client, mint) if a.action == "override"]
    assert [(a.decision, a.policy_ids) for a in denials] == [
        ("deny", ("override-needs-admin-and-reason",))
    ]


def test_an_override_with_a_reason_is_audited_and_makes_the_bytes_deployable(client, upload, mint):
    sha = upload(MALICIOUS)
    r = client.post(
        f"/v1/artifacts/{sha}/override",
        json={"reason": "vendor model, reviewed by security (TICKET-42)"},
        headers=bearer(mint("root", "admin")),
    )
    assert r.status_code == 200, r.text
    assert r.json()["deployable"] is True
    records = _audit(client, mint)
    verify_chain(records)
    change = [a for a in records if a.action == "override" and "->" in a.decision]
    assert change[0].reason == "vendor model, reviewed by security (TICKET-42)"
    assert change[0].decision == "unsafe -> approved"
    assert change[0].principal.endswith("|root")


def test_the_gate_answers_200_with_allowed_false_then_true(client, upload, mint):
    sha = upload(BENIGN)
    ask = bearer(mint("deployer-bot", "deployer"))
    before = client.get("/v1/gate", params={"digest": sha, "action": "deploy"}, headers=ask)
    assert before.status_code == 200
    assert before.json()["allowed"] is False
    assert "safe" in before.json()["reason"]
    client.post(f"/v1/artifacts/{sha}/approve", headers=bearer(mint("alice", "approver")))
    after = client.get("/v1/gate", params={"digest": sha}, headers=ask)
    assert after.json() == {
        "digest": sha,
        "action": "deploy",
        "allowed": True,
        "reason": after.json()["reason"],
        "state": "approved",
    }


def test_the_gate_says_no_for_an_unknown_digest(client, mint):
    r = client.get("/v1/gate", params={"digest": "0" * 64}, headers=bearer(mint("d", "deployer")))
    assert r.status_code == 200
    assert r.json()["allowed"] is False
    assert "unknown digest" in r.json()["reason"]


def test_a_malformed_digest_is_a_422_naming_the_parameter(client, mint):
    r = client.get("/v1/gate", params={"digest": "abc"}, headers=bearer(mint("d", "deployer")))
    assert r.status_code == 422
    assert r.json()["errors"][0]["loc"] == ["query", "digest"]
    assert "digest" in r.json()["detail"]


def test_an_unknown_artifact_is_a_404(client, mint):
    r = client.get(f"/v1/artifacts/{'a' * 64}", headers=bearer(mint("v", "viewer")))
    assert r.status_code == 404
    assert r.json()["title"] == "Not Found"


def test_a_forbidden_lookup_looks_like_an_unknown_one(client, upload, mint):
    sha = upload(BENIGN)
    r = client.get(f"/v1/artifacts/{sha}", headers=bearer(mint("nobody")))
    assert r.status_code == 404


def test_deciding_before_the_scan_finished_is_a_409(client, mint, app):
    app.state.scanner.stop()  # nothing scans from here on
    r = client.post("/v1/artifacts?name=m", content=BENIGN, headers=bearer(mint("i", "importer")))
    sha = r.json()["sha256"]
    decided = client.post(f"/v1/artifacts/{sha}/approve", headers=bearer(mint("a", "approver")))
    assert decided.status_code == 409
    assert "no finished scan" in decided.json()["detail"]


def test_the_report_and_findings_of_an_unsafe_artifact(client, upload, mint):
    sha = upload(MALICIOUS)
    reader = bearer(mint("v", "viewer"))
    report = client.get(f"/v1/artifacts/{sha}/report", headers=reader).json()
    assert report["verdict"] == "unsafe"
    findings = client.get(f"/v1/artifacts/{sha}/findings", headers=reader).json()
    assert findings["total"] == len(report["findings"]) > 0
    severe = client.get(
        f"/v1/artifacts/{sha}/findings", params={"severity": "critical"}, headers=reader
    ).json()
    assert all(f["severity"] == "critical" for f in severe["findings"])
    rule = report["findings"][0]["rule_id"]
    one = client.get(f"/v1/artifacts/{sha}/findings", params={"rule_id": rule}, headers=reader)
    assert {f["rule_id"] for f in one.json()["findings"]} == {rule}


def test_an_unknown_severity_filter_names_the_choices(client, upload, mint):
    sha = upload(BENIGN)
    r = client.get(
        f"/v1/artifacts/{sha}/findings",
        params={"severity": "dire"},
        headers=bearer(mint("v", "viewer")),
    )
    assert r.status_code == 422
    assert "critical" in r.json()["detail"]


def test_listing_filters_and_paginates(client, upload, mint):
    safe = upload(BENIGN)
    unsafe = upload(MALICIOUS)
    reader = bearer(mint("v", "viewer"))
    everything = client.get("/v1/artifacts", headers=reader).json()
    assert everything["total"] == 2
    assert [a["sha256"] for a in everything["items"]] == [unsafe, safe]
    only_unsafe = client.get("/v1/artifacts", params={"verdict": "unsafe"}, headers=reader).json()
    assert [a["sha256"] for a in only_unsafe["items"]] == [unsafe]
    by_state = client.get("/v1/artifacts", params={"state": "safe"}, headers=reader).json()
    assert [a["sha256"] for a in by_state["items"]] == [safe]
    severe = client.get("/v1/artifacts", params={"severity": "high"}, headers=reader).json()
    assert [a["sha256"] for a in severe["items"]] == [unsafe]
    page = client.get("/v1/artifacts", params={"limit": 1, "offset": 1}, headers=reader).json()
    assert (page["total"], page["limit"], page["offset"]) == (2, 1, 1)
    assert [a["sha256"] for a in page["items"]] == [safe]
    none = client.get("/v1/artifacts", params={"source": "mlflow"}, headers=reader).json()
    assert none["total"] == 0
    later = client.get(
        "/v1/artifacts", params={"since": "2999-01-01T00:00:00Z"}, headers=reader
    ).json()
    assert later["total"] == 0


def test_audit_export_is_for_admins_only(client, mint):
    r = client.get("/v1/admin/audit", headers=bearer(mint("alice", "approver")))
    assert r.status_code == 403
    assert "admin denied" in r.json()["detail"]


def test_registering_a_server_side_path_is_for_admins_only(client, mint, tmp_path, app):
    path = tmp_path / "server-side.pkl"
    path.write_bytes(BENIGN)
    denied = client.post(
        "/v1/admin/register", json={"path": str(path)}, headers=bearer(mint("i", "importer"))
    )
    assert denied.status_code == 403
    made = client.post(
        "/v1/admin/register", json={"path": str(path)}, headers=bearer(mint("root", "admin"))
    )
    assert made.status_code == 201, made.text
    assert made.json()["bindings"][0] == {
        "source": "path",
        "name": "server-side.pkl",
        "version": "",
        "alias": None,
        "member_path": "",
    }
    missing = client.post(
        "/v1/admin/register",
        json={"path": str(tmp_path / "nope")},
        headers=bearer(mint("root", "admin")),
    )
    assert missing.status_code == 400
    assert "nope" in missing.json()["detail"]


def test_unknown_body_fields_are_refused(client, upload, mint):
    sha = upload(BENIGN)
    r = client.post(
        f"/v1/artifacts/{sha}/approve",
        json={"reason": "ok", "approved_by": "someone-else"},
        headers=bearer(mint("alice", "approver")),
    )
    assert r.status_code == 422
    assert "approved_by" in r.json()["detail"]
