"""Uploading through the console: the API's checks, in the same order, before a byte is read."""

from __future__ import annotations

import pickle

from .helpers import csrf_of, sign_in

BENIGN = pickle.dumps({"weights": [3.0]}, protocol=4)


def _blobs(app) -> list[str]:
    root = app.state.runtime.blobs.root
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def test_an_importer_uploads_a_file_and_lands_on_its_model_card(browser, mint, app):
    sign_in(browser, mint("ivan", "importer"))
    csrf = csrf_of(browser.get("/console/inventory").text)
    r = browser.post(
        f"/console/upload?csrf={csrf}",
        files={"file": ("tiny.pkl", BENIGN, "application/octet-stream")},
        follow_redirects=False,
    )
    assert r.status_code == 303, r.text
    app.state.scanner.join()
    card = browser.get(r.headers["location"]).text
    assert 'class="badge badge-safe"' in card
    assert "tiny.pkl" in card


def test_an_upload_without_the_csrf_token_is_refused_before_anything_is_stored(browser, mint, app):
    sign_in(browser, mint("ivan", "importer"))
    before = _blobs(app)
    r = browser.post(
        "/console/upload?csrf=" + "0" * 64,
        files={"file": ("tiny.pkl", BENIGN, "application/octet-stream")},
    )
    assert r.status_code == 403
    assert _blobs(app) == before


def test_an_upload_by_a_viewer_is_refused_by_the_policies(browser, mint, app):
    sign_in(browser, mint("vera", "viewer"))
    csrf = csrf_of(browser.get("/console/inventory").text)
    before = _blobs(app)
    r = browser.post(
        f"/console/upload?csrf={csrf}",
        files={"file": ("tiny.pkl", BENIGN, "application/octet-stream")},
    )
    assert r.status_code == 403
    assert "import denied" in r.text
    assert _blobs(app) == before


def test_an_upload_with_an_unprintable_file_name_is_refused_with_the_reason(browser, mint):
    sign_in(browser, mint("ivan", "importer"))
    csrf = csrf_of(browser.get("/console/inventory").text)
    r = browser.post(
        f"/console/upload?csrf={csrf}",
        files={"file": ("evil\u202egnp.pkl", BENIGN, "application/octet-stream")},
    )
    assert r.status_code == 422
    assert "\\u202e" in r.text
    assert "\u202e" not in r.text
