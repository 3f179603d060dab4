"""Issue 14 items 3-5: truncated multipart bodies, names, and crashed uploads' temp files.

Before the fix: a multipart body without its closing boundary was stored (201, the partial
part under its own digest); ``?name=`` kept ESC, LF and NUL as-is in the binding and the audit
reason; a ``kill -9`` during an upload left its ``.incoming-*`` file behind forever.
"""

from __future__ import annotations

import fcntl
import os
import pickle
import time

import pytest
from fastapi.testclient import TestClient

from mamori.service import ScanMode, create_app
from mamori.store.auditlog import iter_audit

from .conftest import LOOPBACK, bearer

BENIGN = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)
BOUNDARY = "mamori-test-boundary"


def _multipart(data: bytes, *, filename: str = "model.pkl", closed: bool = True) -> bytes:
    head = (
        f"--{BOUNDARY}\r\n"
        f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode() if closed else b""
    return head + data + tail


def _post_multipart(client, token: str, body: bytes):
    return client.post(
        "/v1/artifacts",
        content=body,
        headers={
            **bearer(token),
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
    )


def _stored_files(settings) -> list[str]:
    return sorted(p.name for p in settings.blob_dir.rglob("*") if p.is_file())


def _nothing_stored(client, settings, mint) -> None:
    listing = client.get("/v1/artifacts", headers=bearer(mint("v", "viewer")))
    assert listing.json()["total"] == 0
    assert _stored_files(settings) == []


def test_a_complete_multipart_upload_is_stored(client, mint):
    r = _post_multipart(client, mint("ivan", "importer"), _multipart(BENIGN))
    assert r.status_code == 201, r.text
    assert r.json()["bindings"][0]["name"] == "model.pkl"


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(
            lambda body: body[: -len(f"\r\n--{BOUNDARY}--\r\n")], id="no-closing-boundary"
        ),
        pytest.param(lambda body: body[:-4], id="closing-boundary-cut-short"),
        pytest.param(lambda body: body[: len(body) // 2], id="cut-inside-the-data"),
        pytest.param(
            lambda body: body[: -len(f"--{BOUNDARY}--\r\n")] + f"--{BOUNDARY}\r\n".encode(),
            id="a-next-part-that-never-comes",
        ),
    ],
)
def test_a_truncated_multipart_body_is_a_400_and_stores_nothing(client, settings, mint, cut):
    body = cut(_multipart(BENIGN))
    r = _post_multipart(client, mint("ivan", "importer"), body)
    assert r.status_code == 400
    assert r.json()["detail"] in {
        "multipart body ended before its closing boundary",
        "malformed multipart body",
    }
    _nothing_stored(client, settings, mint)


@pytest.mark.parametrize(
    "bad",
    ["m\x1b[2J.pkl", "m\n.pkl", "m\x00.pkl", "m\u202e.lkp", "m\u200b.pkl", " m.pkl", "m.pkl\r"],
)
def test_a_name_with_controls_bidi_or_invisible_characters_is_refused_before_storing(
    client, settings, mint, bad
):
    r = client.post(
        "/v1/artifacts",
        params={"name": bad},
        content=BENIGN,
        headers=bearer(mint("ivan", "importer")),
    )
    assert r.status_code == 422
    detail = r.json()["detail"]
    assert detail.startswith("name ")
    assert all(c.isprintable() for c in detail)
    _nothing_stored(client, settings, mint)


def test_a_version_with_a_line_feed_is_refused(client, settings, mint):
    r = client.post(
        "/v1/artifacts",
        params={"name": "m.pkl", "version": "1\nforged audit line"},
        content=BENIGN,
        headers=bearer(mint("ivan", "importer")),
    )
    assert r.status_code == 422
    assert "version" in r.json()["detail"]
    _nothing_stored(client, settings, mint)


@pytest.mark.parametrize("bad", ["m\x1b.pkl", "evil\u202egpj.pkl", "a\u200b.pkl"])
def test_a_multipart_file_name_breaking_the_name_rule_is_refused(client, settings, mint, bad):
    r = _post_multipart(client, mint("ivan", "importer"), _multipart(BENIGN, filename=bad))
    assert r.status_code == 422
    assert r.json()["detail"].startswith("multipart file name ")
    _nothing_stored(client, settings, mint)


def test_a_multipart_path_keeps_its_last_component_only(client, mint):
    body = _multipart(BENIGN, filename="C:\\Users\\x\\model.pkl")
    r = _post_multipart(client, mint("ivan", "importer"), body)
    assert r.status_code == 201
    assert r.json()["bindings"][0]["name"] == "model.pkl"


def test_accepted_names_reach_the_audit_log_unchanged(client, app, mint):
    r = client.post(
        "/v1/artifacts",
        params={"name": "résumé model.pkl"},
        content=BENIGN,
        headers=bearer(mint("ivan", "importer")),
    )
    assert r.status_code == 201
    (record,) = [a for a in iter_audit(app.state.runtime.store) if a.decision == "quarantined"]
    assert record.reason == "upload:résumé model.pkl"


def _orphan(settings, name: str, *, age: float = 3600) -> str:
    settings.blob_dir.mkdir(parents=True, exist_ok=True)
    path = settings.blob_dir / name
    path.write_bytes(b"half an upload")
    old = time.time() - age
    os.utime(path, (old, old))
    return str(path)


def test_a_crashed_uploads_temp_file_is_removed_when_the_service_starts(settings, mint):
    left = _orphan(settings, ".incoming-crashed")
    with TestClient(create_app(settings, scan_mode=ScanMode.INLINE), client=LOOPBACK):
        assert not os.path.exists(left)


def test_a_temp_file_a_live_writer_holds_is_kept(settings):
    held = _orphan(settings, ".incoming-live")
    young = _orphan(settings, ".incoming-young", age=0)
    with open(held, "rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)  # what BlobStore.put_stream holds
        with TestClient(create_app(settings, scan_mode=ScanMode.INLINE), client=LOOPBACK):
            assert os.path.exists(held)
            assert os.path.exists(young)


def test_failed_uploads_leave_no_temp_file(client, settings, mint):
    token = mint("ivan", "importer")
    _post_multipart(client, token, _multipart(BENIGN, closed=False))
    _post_multipart(client, token, _multipart(BENIGN, filename="a\x1b"))
    _post_multipart(client, token, _multipart(BENIGN) + b"--" + BOUNDARY.encode())

    def _dies():
        yield BENIGN
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        client.post("/v1/artifacts", params={"name": "m"}, content=_dies(), headers=bearer(token))
    assert [n for n in _stored_files(settings) if n.startswith(".incoming-")] == []
