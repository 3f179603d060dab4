"""JSON beside models: chat templates are checked, auto_map is reported, the rest is data."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Severity, Verdict
from mamori.scan import scan_bytes

CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
)


def _scan(document: object, name: str = "config.json"):
    return scan_bytes(json.dumps(document).encode(), name)


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


def test_an_ordinary_model_config_is_safe_and_recognised():
    report = _scan({"architectures": ["BertModel"], "hidden_size": 32, "vocab_size": 100})
    assert report.format is FileFormat.JSON
    assert report.findings == ()


def test_a_benign_chat_template_in_tokenizer_config_is_safe():
    report = _scan({"chat_template": CHATML, "eos_token": "<|im_end|>"}, "tokenizer_config.json")
    assert report.verdict is Verdict.SAFE


def test_a_template_injection_in_tokenizer_config_is_critical():
    # CVE-2024-34359 style: reach os through a gadget's __globals__
    hostile = "{{ cycler.__init__.__globals__.os.popen('true').read() }}"
    report = _scan({"chat_template": hostile}, "tokenizer_config.json")
    assert "MAM-TPL-001" in _rules(report)
    assert report.max_severity is Severity.CRITICAL


def test_named_templates_are_each_checked():
    document = {
        "chat_template": [
            {"name": "default", "template": CHATML},
            {"name": "tool_use", "template": "{{ self.__init__.__globals__ }}"},
        ]
    }
    report = _scan(document, "tokenizer_config.json")
    flagged = [f for f in report.findings if f.rule_id == "MAM-TPL-001"]
    assert flagged
    assert all("chat_template[tool_use]" in f.message for f in flagged)


def test_auto_map_is_reported_as_remote_code():
    report = _scan({"auto_map": {"AutoModel": "modeling_evil.EvilModel"}})
    (finding,) = report.findings
    assert finding.rule_id == "MAM-JSON-001"
    assert "modeling_evil.EvilModel" in finding.message
    assert report.verdict is Verdict.UNSAFE


def test_duplicate_keys_are_reported_because_parsers_disagree():
    raw = b'{"chat_template": "hello", "chat_template": "{{ self.__dict__ }}"}'
    report = scan_bytes(raw, "tokenizer_config.json")
    assert {"MAM-JSON-003", "MAM-TPL-001"} <= _rules(report)


def test_text_that_only_starts_like_json_is_not_claimed():
    report = scan_bytes(b"{ this is not json", "notes.txt")
    assert report.format is FileFormat.UNKNOWN


@settings(max_examples=100, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda c: st.lists(c) | st.dictionaries(st.text(), c),
        max_leaves=20,
    )
)
def test_any_json_value_scans_without_crashing(value):
    report = scan_bytes(json.dumps({"data": value}).encode(), "x.json")
    assert "MAM-GEN-001" not in _rules(report)


def test_json_nested_past_the_recursion_limit_is_a_finding_not_a_crash():
    report = scan_bytes(b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", "config.json")
    assert _rules(report) == {"MAM-JSON-002"}
