"""Standalone Jinja templates (chat_template.jinja, *.j2): recognised by content, checked."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Verdict
from mamori.scan import scan_bytes, scan_path

_REAL = sorted((Path(__file__).parents[2] / "assets" / "chat_templates").glob("*.jinja"))
HOSTILE = "{% for m in messages %}{{ m.content }}{% endfor %}\n{{ cycler.__init__.__globals__ }}"


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


@pytest.mark.parametrize("path", _REAL, ids=lambda p: p.stem)
def test_a_real_chat_template_file_is_recognised_and_safe(path):
    report = scan_path(path)
    assert report.format is FileFormat.TEXT
    assert report.verdict is Verdict.SAFE
    assert report.findings == ()


@pytest.mark.parametrize("name", ["chat_template.jinja", "prompt.j2", "x.template", "noext"])
def test_a_hostile_template_file_is_unsafe_whatever_its_name(name):
    report = scan_bytes(HOSTILE.encode(), name)
    assert report.format is FileFormat.TEXT
    assert "MAM-TPL-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_a_template_that_starts_with_a_tag_but_does_not_parse_fails_closed():
    report = scan_bytes(b"{% for m in messages %}{{ m.content }", "chat_template.jinja")
    assert "MAM-TPL-002" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_a_large_template_file_is_recognised_by_its_leading_tag():
    body = "{% for m in messages %}{{ m.content }}{% endfor %}\n" * 2_000
    report = scan_bytes((body + "{{ self._TemplateReference__context }}").encode(), "t.jinja")
    assert report.verdict is Verdict.UNSAFE


def test_prose_with_stray_braces_that_does_not_parse_is_not_a_template():
    report = scan_bytes(b"Use {{ to open and %} to close.", "notes.txt")
    assert report.format is FileFormat.UNKNOWN


def test_text_without_jinja_delimiters_is_not_a_template():
    assert scan_bytes(b"hello {name}", "notes.txt").format is FileFormat.UNKNOWN


def test_a_json_document_holding_a_template_is_read_as_json():
    report = scan_bytes(b'{"chat_template": "{{ messages }}"}', "tokenizer_config.json")
    assert report.format is FileFormat.JSON
    assert report.findings == ()


def test_a_utf8_bom_is_accepted():
    report = scan_bytes(b"\xef\xbb\xbf" + HOSTILE.encode(), "chat_template.jinja")
    assert report.verdict is Verdict.UNSAFE


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}%#()[]._'\"|~+ abcxyz_-\n")), max_size=200))
def test_any_text_scans_without_a_parser_failure(text):
    assert "MAM-GEN-001" not in _rules(scan_bytes(text.encode(), "t.jinja"))


def test_a_payload_after_pages_of_filler_is_found_through_the_tail():
    filler = "You are a helpful assistant.\n" * 5_000
    text = filler + "{{ cycler.__init__.__globals__.os.popen('id').read() }}\n"
    report = scan_bytes(text.encode(), "chat_template.jinja")
    assert report.format is FileFormat.TEXT
    assert report.verdict is Verdict.UNSAFE


def test_a_large_text_with_stray_braces_that_does_not_parse_is_not_reported():
    text = "notes {{ unclosed\n" + "plain words\n" * 10_000
    report = scan_bytes(text.encode(), "notes.txt")
    assert report.findings == ()
