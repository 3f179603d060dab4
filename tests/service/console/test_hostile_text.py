"""Model-controlled strings render inert: markup is escaped, invisible characters shown.

File and member names, evidence, registry names, versions and aliases come from whoever made
the model or named it in a registry. Each test puts ``<script>``, markup with event handlers,
a bidi override (CVE-2021-42574) and an ANSI escape into one of them and checks the page
shows them as text: HTML-escaped, and with the invisible characters written as escapes.
"""

from __future__ import annotations

import io
import zipfile
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update

from mamori.store.models import ArtifactRow, BindingRow

from .helpers import sign_in

SCRIPT = "<script>alert(1)</script>"
BIDI = "\u202e"
ANSI = "\x1b[31m"
HOSTILE = f"{SCRIPT}{BIDI}{ANSI}"


def _assert_inert(html: str, *, shown: str = "&lt;script&gt;alert(1)&lt;/script&gt;") -> None:
    lowered = html.lower()
    assert "<script" not in lowered
    assert "<img" not in lowered
    assert "<svg onload" not in lowered
    assert BIDI not in html
    assert "\x1b" not in html
    # The hostile text did reach the page, as text: the test would prove nothing otherwise.
    assert shown in html


def _pickle_calling(module: str) -> bytes:
    """A pickle that imports ``module``.x and calls it (only ever scanned here)."""
    ref = f"{module}\nx\n".encode()
    return b"\x80\x04c" + ref + b"N\x85R."


def _zip_with_member(member: str, data: bytes) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(member, data)
    return buf.getvalue()


def test_a_hostile_upload_file_name_renders_inert_everywhere(browser, mint, upload):
    sha = upload(b"\x80\x04K\x01.", name=f"{SCRIPT}<img src=x onerror=alert(2)>.pkl")
    sign_in(browser, mint("root", "admin"))
    for path in ("/console/inventory", f"/console/artifacts/{sha}"):
        _assert_inert(browser.get(path).text)


def test_a_hostile_member_name_renders_inert_on_the_model_card(browser, mint, upload):
    sha = upload(_zip_with_member(f"{HOSTILE}/data.pkl", b"\x80\x04K\x01."), name="m.zip")
    sign_in(browser, mint("vera", "viewer"))
    card = browser.get(f"/console/artifacts/{sha}").text
    _assert_inert(card)
    assert "\\u202e\\x1b[31m/data.pkl" in card  # the invisible characters, made visible


def test_hostile_evidence_renders_inert_on_the_model_card(browser, mint, upload):
    sha = upload(_pickle_calling(f"{SCRIPT}{BIDI}"), name="evil.pkl")
    sign_in(browser, mint("vera", "viewer"))
    card = browser.get(f"/console/artifacts/{sha}").text
    _assert_inert(card)
    assert "MAM-PKL" in card


@pytest.mark.parametrize("column", ["name", "version", "alias", "source"])
def test_a_hostile_registry_binding_renders_inert(browser, mint, upload, app, column):
    sha = upload(b"\x80\x04K\x02.", name="clean.pkl")
    hostile = {
        "name": f"{SCRIPT}{BIDI}{ANSI}",
        "version": f"{SCRIPT}<img src=x onerror=alert(3)>{BIDI}",
        "alias": f"{SCRIPT}<svg onload=alert(4)>{BIDI}",
        "source": f"{SCRIPT}{BIDI}"[:32],
    }
    # Entry points refuse invisible characters; records written before that rule (or by an
    # integration that forgot it) are what this guards against, so write one directly.
    store = app.state.runtime.store
    with store.write() as session:
        artifact_id = session.execute(
            select(ArtifactRow.id).where(ArtifactRow.sha256 == sha)
        ).scalar_one()
        session.add(
            BindingRow(
                artifact_id=artifact_id,
                source="mlflow",
                name="model",
                version="1",
                alias=None,
                created_by="test",
                created_at=datetime.now(UTC),
            )
        )
    with store.write() as session:
        session.execute(
            update(BindingRow)
            .where(BindingRow.source == "mlflow")
            .values({column: hostile[column]})
        )
    sign_in(browser, mint("vera", "viewer"))
    card = browser.get(f"/console/artifacts/{sha}").text
    _assert_inert(card)
    if column != "alias":  # the inventory lists source:name@version
        _assert_inert(browser.get("/console/inventory").text)
    if column == "source":
        _assert_inert(browser.get("/console").text)  # the per-source chart


def test_the_csv_export_writes_invisible_characters_as_escapes(browser, mint, upload, app):
    sha = upload(b"\x80\x04K\x03.", name="clean.pkl")
    with app.state.runtime.store.write() as session:
        session.execute(update(BindingRow).values(name=f"{BIDI}{ANSI}x"))
    sign_in(browser, mint("vera", "viewer"))
    export = browser.get("/console/inventory.csv").text
    assert sha in export
    assert BIDI not in export
    assert "\x1b" not in export
    assert "\\u202e\\x1b[31mx" in export
