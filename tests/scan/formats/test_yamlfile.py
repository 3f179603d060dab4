"""YAML configs: templates in any value and Python object tags, composed safely, never loaded."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.findings import FileFormat, Verdict
from mamori.scan import scan_bytes

HOSTILE = "{{ cycler.__init__.__globals__.os.popen('id').read() }}"


def _rules(report) -> set[str]:
    return {f.rule_id for f in report.findings}


def test_an_ordinary_config_is_recognised_and_safe():
    report = scan_bytes(b"model_name: bert\nparameters:\n  max_length: 512\n", "config.yaml")
    assert report.format is FileFormat.YAML
    assert report.findings == ()


def test_a_benign_chat_template_in_yaml_is_safe():
    text = (
        "chat_template: \"{% for m in messages %}{{ m['role'] }}: {{ m.content }}{% endfor %}\"\n"
    )
    report = scan_bytes(text.encode(), "config.yaml")
    assert report.format is FileFormat.YAML
    assert report.verdict is Verdict.SAFE


def test_a_template_injection_under_any_key_is_unsafe():
    text = f'deploy:\n  script: "{HOSTILE}"\n'
    report = scan_bytes(text.encode(), "serve.yaml")
    assert "MAM-TPL-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE
    assert any("deploy.script" in f.message for f in report.findings)


def test_a_block_scalar_template_is_checked():
    body = "{% for m in messages %}{{ m.content }}{% endfor %}"
    text = f"---\nchat_template: |\n  {body}\n  {HOSTILE}\n"
    report = scan_bytes(text.encode(), "config.yml")
    assert report.verdict is Verdict.UNSAFE


def test_a_python_object_tag_is_critical():
    text = "model: !!python/object/apply:os.system ['id']\n"
    report = scan_bytes(text.encode(), "config.yaml")
    assert "MAM-YAML-002" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_an_alias_bomb_is_walked_once_per_node():
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    lines += [
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}" + f",*{chr(97 + i)}" * 8 + "]"
        for i in range(8)
    ]
    report = scan_bytes(("\n".join(lines) + "\n").encode(), "bomb.yaml")
    assert report.format is FileFormat.YAML
    assert report.findings == ()


def test_a_large_file_that_starts_like_yaml_but_breaks_fails_closed():
    text = "key: value\n" + "x: 1\n" * 20_000 + "broken: [unclosed\n"
    report = scan_bytes(text.encode(), "config.yaml")
    assert "MAM-YAML-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_prose_is_not_yaml():
    assert scan_bytes(b"Hello world.\nThis is a README.\n", "README").format is FileFormat.UNKNOWN


def test_merges_txt_is_not_yaml():
    assert scan_bytes("#version: 0.2\nĠ t\nh e\n".encode(), "merges.txt").format is (
        FileFormat.UNKNOWN
    )


@settings(max_examples=60, deadline=None)
@given(
    st.dictionaries(st.from_regex(r"[a-z]{1,8}", fullmatch=True), st.text(max_size=20), min_size=1)
)
def test_any_mapping_dumped_by_pyyaml_is_recognised(document):
    import yaml

    raw = yaml.safe_dump(document).encode()
    report = scan_bytes(raw, "x.yaml")
    assert report.format is FileFormat.YAML
    assert "MAM-GEN-001" not in _rules(report)


def test_jinja_that_yaml_reads_as_syntax_is_checked_as_a_template():
    # To YAML, `{{ ... }}` is a flow mapping and no value holds a template; to a renderer of
    # prompt.yaml.j2 it is an expression.
    text = "role: {{ cycler.__init__.__globals__.os.popen('id').read() }}\n"
    report = scan_bytes(text.encode(), "prompt.yaml.j2")
    assert report.format is FileFormat.YAML
    assert "MAM-TPL-001" in _rules(report)
    assert report.verdict is Verdict.UNSAFE


def test_a_benign_template_in_a_value_is_reported_once_at_most():
    text = 'chat_template: "{{ cycler.__init__ }}"\n'
    report = scan_bytes(text.encode(), "config.yaml")
    assert not any("document text" in f.message for f in report.findings)


def test_a_large_text_that_only_starts_like_yaml_is_not_yaml():
    text = "Note: this is prose, not a config.\n" + "A line of prose without a key.\n" * 3000
    report = scan_bytes(text.encode(), "NOTES")
    assert report.format is not FileFormat.YAML
