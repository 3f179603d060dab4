"""Sessions, CSRF and CSP: the console signs in with the API's own verification."""

from __future__ import annotations

import pickle
import re

import pytest

from mamori.errors import IdentityError
from mamori.service.console import CSP, ConsoleSessions
from mamori.service.console.session import COOKIE
from mamori.store.auditlog import iter_audit

from .helpers import csrf_of, sign_in

BENIGN = pickle.dumps({"w": [1.0]}, protocol=4)


def test_signing_in_with_a_jwt_sets_a_secure_httponly_samesite_strict_cookie(browser, mint):
    form = browser.get("/console/login")
    r = browser.post(
        "/console/login",
        data={"credential": mint("vera", "viewer"), "csrf": csrf_of(form.text)},
        follow_redirects=False,
    )
    assert r.status_code == 303
    cookie = next(h for h in r.headers.get_list("set-cookie") if h.startswith(COOKIE + "="))
    attributes = {a.strip().lower() for a in cookie.split(";")[1:]}
    assert {"secure", "httponly", "samesite=strict", "path=/"} <= attributes
    assert "domain" not in cookie.lower()
    assert browser.get("/console").status_code == 200


def test_a_token_the_api_would_refuse_is_refused_at_sign_in(browser, mint):
    form = browser.get("/console/login")
    expired = mint("vera", "viewer", ttl_seconds=-3600)
    r = browser.post("/console/login", data={"credential": expired, "csrf": csrf_of(form.text)})
    assert r.status_code == 401
    assert "Sign-in refused" in r.text
    assert COOKIE not in browser.cookies


def test_sign_in_without_the_form_csrf_value_is_refused(browser, mint):
    browser.get("/console/login")
    r = browser.post(
        "/console/login", data={"credential": mint("vera", "viewer"), "csrf": "0" * 64}
    )
    assert r.status_code == 403
    assert COOKIE not in browser.cookies


def test_without_a_session_every_view_redirects_to_sign_in(browser):
    for path in ("/console", "/console/inventory", "/console/audit", "/console/inventory.csv"):
        r = browser.get(path, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"] == "/console/login"


def test_an_altered_session_cookie_is_sent_back_to_sign_in(browser, mint):
    sign_in(browser, mint("vera", "viewer"))
    value = browser.cookies[COOKIE]
    middle = len(value) // 2
    flipped = value[:middle] + ("A" if value[middle] != "A" else "B") + value[middle + 1 :]
    browser.cookies.clear()
    assert browser.get("/console", headers={"Cookie": f"{COOKIE}={value}"}).status_code == 200
    r = browser.get("/console", headers={"Cookie": f"{COOKIE}={flipped}"}, follow_redirects=False)
    assert r.status_code == 303


def test_a_cookie_sealed_under_another_key_does_not_open(tmp_path):
    mine = ConsoleSessions.from_dir(tmp_path / "a")
    theirs = ConsoleSessions.from_dir(tmp_path / "b")
    cookie, _ = theirs.seal("mamori_x")
    with pytest.raises(IdentityError, match="invalid console session"):
        mine.open(cookie)


def test_an_expired_session_does_not_open_even_with_a_valid_seal(tmp_path):
    sessions = ConsoleSessions.from_dir(tmp_path)
    cookie, opened = sessions.seal("mamori_x", now=1000.0)
    with pytest.raises(IdentityError, match="expired"):
        sessions.open(cookie, now=opened.expires_at + 1)


def test_the_session_key_file_is_private_to_the_service_user(tmp_path):
    ConsoleSessions.from_dir(tmp_path)
    assert (tmp_path / "console.key").stat().st_mode & 0o777 == 0o600


def test_a_revoked_api_token_ends_its_console_session_at_the_next_request(browser, client, mint):
    root = {"Authorization": f"Bearer {mint('root', 'admin')}"}
    made = client.post(
        "/v1/admin/tokens",
        json={"name": "ops", "roles": ["viewer"], "scopes": ["read"]},
        headers=root,
    ).json()
    sign_in(browser, made["token"])
    assert browser.get("/console").status_code == 200
    client.delete(f"/v1/admin/tokens/{made['id']}", headers=root)
    r = browser.get("/console", follow_redirects=False)
    assert r.status_code == 303
    assert r.headers["location"] == "/console/login"


def test_every_console_page_sends_a_csp_that_allows_no_script(browser, mint, upload):
    sha = upload(BENIGN)
    sign_in(browser, mint("root", "admin"))
    for path in (
        "/console/login",
        "/console",
        "/console/inventory",
        f"/console/artifacts/{sha}",
        "/console/audit",
        "/console/static/console.css",
    ):
        r = browser.get(path)
        assert r.status_code == 200, path
        assert r.headers["content-security-policy"] == CSP
        assert "script-src 'none'" in CSP
        assert "unsafe-inline" not in CSP
        assert r.headers["x-frame-options"] == "DENY"
        assert "<script" not in r.text.lower(), path


def test_a_decision_without_the_session_csrf_token_is_refused_and_changes_nothing(
    browser, mint, upload, client
):
    sha = upload(BENIGN, by="ivan")
    sign_in(browser, mint("ana", "approver"))
    r = browser.post(f"/console/artifacts/{sha}/approve", data={"reason": "ok", "csrf": "f" * 64})
    assert r.status_code == 403
    assert "CSRF" in r.text
    state = client.get(
        f"/v1/artifacts/{sha}", headers={"Authorization": f"Bearer {mint('v', 'viewer')}"}
    ).json()["state"]
    assert state == "safe"


def test_the_csrf_token_of_one_session_is_refused_in_another(browser_factory, mint, upload):
    sha = upload(BENIGN, by="ivan")
    first, second = browser_factory(), browser_factory()
    sign_in(first, mint("ana", "approver"))
    sign_in(second, mint("bob", "approver"))
    stolen = csrf_of(first.get(f"/console/artifacts/{sha}").text)
    r = second.post(f"/console/artifacts/{sha}/approve", data={"csrf": stolen})
    assert r.status_code == 403


def test_signing_out_drops_the_cookie(browser, mint):
    sign_in(browser, mint("vera", "viewer"))
    page = browser.get("/console")
    r = browser.post("/console/logout", data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert r.status_code == 303
    assert COOKIE not in browser.cookies
    assert re.search(r"/console/login", r.headers["location"])


def test_a_refused_sign_in_is_counted_and_audited_like_a_refused_api_token(browser, app):
    for _ in range(3):
        form = browser.get("/console/login")
        r = browser.post(
            "/console/login", data={"credential": "not-a-jwt", "csrf": csrf_of(form.text)}
        )
        assert r.status_code == 401
    samples = app.state.metrics.registry.get_sample_value(
        "mamori_auth_refusals_total", {"reason": "unauthenticated", "group": "console"}
    )
    assert samples == 3
    assert app.state.refusals.flush() == 1
    (record,) = [
        r for r in iter_audit(app.state.runtime.store) if r.action == "refused-unauthenticated"
    ]
    assert record.reason.startswith("3 request(s) refused")
    assert "not-a-jwt" not in record.reason  # the credential itself is never logged
