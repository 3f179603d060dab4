"""The console in a real Chromium: sign in, upload, walk every view, approve as a second user.

Drives Debian's ``/usr/bin/chromium`` through Playwright against ``mamori serve`` running as a
real process. Each page is checked with axe-core (vendored in tests/assets/axe): no serious or
critical accessibility violation. The browser context bypasses the CSP only so that the test
can inject axe; the CSP itself is tested in test_session.py.

``MAMORI_CONSOLE_SCREENSHOTS=1`` writes the screenshots to docs/console/ (the README links
them); otherwise they go to the test's temporary directory.
"""

from __future__ import annotations

import os
import pickle
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.service.realserver import free_port, mamori_serve

from mamori.config import load_settings
from mamori.service.runtime import dev_issuer

CHROMIUM = Path("/usr/bin/chromium")
AXE = Path(__file__).parents[2] / "assets" / "axe" / "axe.min.js"
DOCS = Path(__file__).parents[3] / "docs" / "console"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


class _Reduce:
    """Unpickling this would run `true`; it is only uploaded and scanned."""

    def __reduce__(self) -> tuple[Any, ...]:
        import os as _os

        return (_os.system, ("true",))


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = tmp_path_factory.mktemp("console") / "data"
    port = free_port()
    settings = load_settings(data_dir=data, port=port)
    issuer = dev_issuer(settings)  # the key pair exists before the server reads it

    def mint(subject: str, *roles: str) -> str:
        return issuer.mint(subject, roles=roles, claims={settings.mfa_claim: ["pwd", "mfa"]})

    with mamori_serve(data, port=port) as (url, _proc):
        digests = {}
        # The unsafe one arrives through the API; the safe one is uploaded in the browser.
        for name, body in (("notebook-export.pkl", pickle.dumps(_Reduce(), protocol=4)),):
            r = httpx.post(
                f"{url}/v1/artifacts",
                params={"name": name},
                content=body,
                headers={"Authorization": f"Bearer {mint('ivan', 'importer')}"},
            )
            assert r.status_code == 201, r.text
            digests[name] = r.json()["sha256"]
        yield {"url": url, "mint": mint, "digests": digests}


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    if os.environ.get("MAMORI_CONSOLE_SCREENSHOTS") == "1":
        DOCS.mkdir(parents=True, exist_ok=True)
        return DOCS
    return tmp_path


def _page(chromium: Any) -> Any:
    context = chromium.new_context(bypass_csp=True, viewport={"width": 1280, "height": 860})
    return context.new_page()


def _sign_in(page: Any, url: str, token: str) -> None:
    page.goto(f"{url}/console/login")
    page.fill("#credential", token)
    page.click("button[type=submit]")
    page.wait_for_url(f"{url}/console")


def _axe(page: Any) -> list[dict[str, Any]]:
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("async () => await axe.run(document)")
    return [v for v in result["violations"] if v["impact"] in {"serious", "critical"}]


def _check(page: Any, shots: Path, name: str) -> None:
    assert _axe(page) == [], name
    page.screenshot(path=str(shots / f"{name}.png"), full_page=True)


def _wait_for_verdict(page: Any) -> None:
    deadline = time.monotonic() + 60
    while page.locator("h1 .badge-quarantined").count() and time.monotonic() < deadline:
        time.sleep(0.3)
        page.reload()
    assert page.locator("h1 .badge-quarantined").count() == 0, "the scan never finished"


def test_a_security_team_walks_the_console_and_approves_with_four_eyes(
    site, chromium, shots, tmp_path
):
    url, mint, digests = site["url"], site["mint"], site["digests"]
    unsafe = digests["notebook-export.pkl"]
    model = tmp_path / "resnet-tiny.pkl"
    model.write_bytes(pickle.dumps({"weights": [0.1, 0.2]}, protocol=4))

    importer = _page(chromium)
    importer.goto(f"{url}/console/login")
    _check(importer, shots, "login")
    _sign_in(importer, url, mint("ivan", "importer", "approver"))
    cookie = next(c for c in importer.context.cookies() if c["name"] == "__Host-mamori_session")
    assert cookie["httpOnly"]
    assert cookie["secure"]
    assert cookie["sameSite"] == "Strict"
    assert importer.evaluate("document.cookie") == ""  # script cannot read the session
    _check(importer, shots, "summary")

    importer.click("text=Inventory")
    assert importer.locator("table.list tbody tr").count() == 1
    importer.set_input_files("#upload-file", str(model))
    importer.click("form.upload button")
    importer.wait_for_url(re.compile(r".*/console/artifacts/[0-9a-f]{64}$"))
    safe = importer.url.rsplit("/", 1)[1]
    _wait_for_verdict(importer)
    assert importer.locator("h1 .badge-safe").is_visible()

    importer.click("text=Inventory")
    assert importer.locator("table.list tbody tr").count() == 2
    _check(importer, shots, "inventory")

    importer.goto(f"{url}/console/artifacts/{unsafe}")
    assert importer.locator(".badge-unsafe").first.is_visible()
    assert importer.locator("text=MAM-PKL-001").first.is_visible()
    _check(importer, shots, "model-card-unsafe")

    # Four eyes: the importer's Approve button is disabled with the policy's reason.
    importer.goto(f"{url}/console/artifacts/{safe}")
    assert importer.locator("form[action$='/approve'] button").is_disabled()
    assert importer.locator("#why-approve").is_visible()
    _check(importer, shots, "model-card-four-eyes")

    approver = _page(chromium)
    _sign_in(approver, url, mint("ana", "approver"))
    approver.goto(f"{url}/console/artifacts/{safe}")
    approver.fill("#reason-approve", "weights reviewed, no code")
    approver.click("form[action$='/approve'] button")
    approver.wait_for_url(f"{url}/console/artifacts/{safe}")
    assert approver.locator("h1 .badge-approved").is_visible()
    assert approver.locator("td", has_text="weights reviewed, no code").is_visible()
    _check(approver, shots, "model-card-approved")

    _read_the_audit_and_sign_out(chromium, url, mint("root", "admin"), shots)


def _read_the_audit_and_sign_out(chromium: Any, url: str, token: str, shots: Path) -> None:
    admin = _page(chromium)
    _sign_in(admin, url, token)
    admin.click("text=Audit log")
    admin.click("text=Verify the whole chain")
    assert admin.locator("text=Chain verified").is_visible()
    assert admin.locator("td", has_text="safe -> approved").count() == 1
    _check(admin, shots, "audit")

    admin.click("text=Sign out")
    admin.wait_for_url(f"{url}/console/login")
    admin.goto(f"{url}/console/audit")
    admin.wait_for_url(f"{url}/console/login")
