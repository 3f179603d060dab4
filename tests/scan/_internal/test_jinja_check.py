"""Chat template checks: real templates stay clean, every SSTI building block is flagged."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mamori.findings import Severity
from mamori.scan._internal.jinja_check import (
    MAX_TEMPLATE_CHARS,
    TemplateIssueKind,
    check_template,
)

# Shapes of widely published chat templates (abridged but syntactically faithful).
LLAMA3 = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    " + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}"
    "{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}"
    "{% endif %}"
)
LLAMA31_TOOLS = (
    "{%- set ns = namespace(system='') -%}{%- if tools is not none -%}"
    "{%- for t in tools -%}{{- t | tojson(indent=4) -}}{%- endfor -%}{%- endif -%}"
    "{%- for m in messages -%}{%- if m.role == 'system' -%}{%- set ns.system = m.content -%}"
    "{%- elif m.tool_calls is defined -%}{%- for c in m.tool_calls -%}"
    "{{- '{\"name\": \"' + c.function.name + '\"}' -}}{%- endfor -%}"
    "{%- else -%}{{- m.content | trim -}}{%- endif -%}{%- endfor -%}"
    "{{- strftime_now('%d %b %Y') -}}"
)
CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + "
    "message['content'] + '<|im_end|>' + '\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
MISTRAL = (
    "{{ bos_token }}{% for message in messages %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}"
    "{% endif %}{% endfor %}"
)
GEMMA = (
    "{{ bos_token }}{% if messages[0]['role'] == 'system' %}"
    "{{ raise_exception('System role not supported') }}{% endif %}"
    "{% for message in messages %}{% if (message['role'] == 'assistant') %}"
    "{% set role = 'model' %}{% else %}{% set role = message['role'] %}{% endif %}"
    "{{ '<start_of_turn>' + role + '\n' + message['content'] | trim + '<end_of_turn>\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{'<start_of_turn>model\n'}}{% endif %}"
)
SMOL_GENERATION = (
    "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}"
    "{{ m.content }}{% endgeneration %}{% else %}{{ m.content }}{% endif %}"
    "{% if loop.index > 100 %}{% break %}{% endif %}{% endfor %}"
)


@pytest.mark.parametrize(
    "template",
    [LLAMA3, LLAMA31_TOOLS, CHATML, MISTRAL, GEMMA, SMOL_GENERATION],
    ids=["llama3", "llama3.1-tools", "chatml", "mistral", "gemma", "generation-tag"],
)
def test_real_world_templates_have_no_issue_at_medium_or_above(template):
    assert [i for i in check_template(template) if i.severity >= Severity.MEDIUM] == []


def _kinds(template: str) -> set[TemplateIssueKind]:
    return {i.kind for i in check_template(template)}


def test_llama_drama_cve_2024_34359_payload_is_critical():
    # https://github.com/abetlen/llama-cpp-python/security/advisories/GHSA-56xg-wfcc-g829
    payload = "{{ cycler.__init__.__globals__.os.popen('true').read() }}"
    issues = check_template(payload)
    assert max(i.severity for i in issues) == Severity.CRITICAL
    assert {TemplateIssueKind.DUNDER_ACCESS, TemplateIssueKind.GADGET_GLOBAL} <= _kinds(payload)


def test_subclasses_walk_is_flagged():
    payload = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    assert TemplateIssueKind.DUNDER_ACCESS in _kinds(payload)


def test_subscript_with_dunder_string_is_flagged():
    assert TemplateIssueKind.DUNDER_ACCESS in _kinds("{{ x['__globals__'] }}")


def test_dunder_split_across_concatenation_is_folded():
    assert TemplateIssueKind.DUNDER_ACCESS in _kinds("{{ x['__gl' ~ 'obals__'] }}")
    assert TemplateIssueKind.DUNDER_ACCESS in _kinds("{{ x['__bui' + 'ltins__'] }}")


def test_attr_filter_with_dunder_is_flagged():
    assert TemplateIssueKind.DUNDER_ACCESS in _kinds("{{ x|attr('__class__') }}")


def test_attr_filter_with_computed_name_is_flagged():
    assert TemplateIssueKind.DYNAMIC_ATTRIBUTE in _kinds("{{ x|attr(name) }}")


def test_str_format_reaching_dunders_is_flagged():
    assert TemplateIssueKind.DUNDER_ACCESS in _kinds("{{ '{0.__class__}'.format(x) }}")


def test_private_attribute_is_high():
    issues = check_template("{{ self._TemplateReference__context }}")
    assert TemplateIssueKind.PRIVATE_ACCESS in {i.kind for i in issues}
    assert TemplateIssueKind.GADGET_GLOBAL in {i.kind for i in issues}


@pytest.mark.parametrize("name", ["lipsum", "joiner", "config", "request"])
def test_gadget_globals_are_medium(name):
    issues = check_template("{{ " + name + " }}")
    assert [(i.kind, i.severity) for i in issues] == [
        (TemplateIssueKind.GADGET_GLOBAL, Severity.MEDIUM)
    ]


@pytest.mark.parametrize("attr", ["popen", "system", "eval", "os", "import_module"])
def test_process_and_eval_attributes_are_flagged(attr):
    assert TemplateIssueKind.DANGEROUS_NAME in _kinds("{{ x." + attr + " }}")


@pytest.mark.parametrize(
    "statement",
    ["{% import 'x' as y %}", "{% from 'x' import y %}", "{% include 'x' %}", "{% extends 'x' %}"],
)
def test_template_loading_statements_are_flagged(statement):
    assert TemplateIssueKind.TEMPLATE_LOADING in _kinds(statement)


def test_unparseable_template_fails_closed():
    issues = check_template("{% for x in %}")
    assert [i.kind for i in issues] == [TemplateIssueKind.PARSE_ERROR]
    assert issues[0].severity == Severity.HIGH


def test_unknown_extension_tag_fails_closed():
    assert _kinds("{% do x.append(1) %}") == {TemplateIssueKind.PARSE_ERROR}


def test_oversized_template_is_not_parsed():
    assert _kinds("x" * (MAX_TEMPLATE_CHARS + 1)) == {TemplateIssueKind.TOO_LARGE}


def test_deeply_nested_template_does_not_crash():
    issues = check_template("{{ " + "(" * 5000 + "1" + ")" * 5000 + " }}")
    assert issues  # a parse failure or a limit, never an exception


def test_namespace_is_allowed_but_its_globals_are_not():
    assert check_template("{% set ns = namespace(a=1) %}{{ ns.a }}") == []
    assert TemplateIssueKind.DUNDER_ACCESS in _kinds("{{ namespace.__init__.__globals__ }}")


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("{}%#()[]._'\"|~+ abcxyz_-\n")), max_size=200))
def test_any_text_yields_a_list_of_issues_and_never_raises(source):
    issues = check_template(source)
    assert isinstance(issues, list)


QWEN25_TOOLS = (
    "{%- if tools %}{{- '<|im_start|>system\\n' }}{%- if messages[0]['role'] == 'system' %}"
    "{{- messages[0]['content'] }}{%- else %}{{- 'You are Qwen.' }}{%- endif %}"
    "{%- for tool in tools %}{{- '\\n' }}{{- tool | tojson }}{%- endfor %}{%- endif %}"
    "{%- for message in messages %}{%- if message.role == 'assistant' %}"
    "{%- for tool_call in message.tool_calls %}{%- if tool_call.function is defined %}"
    "{%- set tool_call = tool_call.function %}{%- endif %}"
    '{{- \'{"name": "\' }}{{- tool_call.name }}{{- tool_call.arguments | tojson }}'
    "{%- endfor %}{%- elif message.role == 'tool' %}"
    "{%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != 'tool') %}"
    "{{- '<|im_start|>user' }}{%- endif %}{{- message.content }}{%- endif %}{%- endfor %}"
)
DEEPSEEK_R1 = (
    "{% if not add_generation_prompt is defined %}{% set add_generation_prompt = false %}"
    "{% endif %}{% set ns = namespace(is_first=false, is_tool=false, system_prompt='') %}"
    "{%- for message in messages %}{%- if message['role'] == 'system' %}"
    "{% set ns.system_prompt = message['content'] %}{%- endif %}{%- endfor %}"
    "{{ bos_token }}{{ ns.system_prompt }}{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' and message['content'] is not none %}"
    "{% set content = message['content'] %}{% if '</think>' in content %}"
    "{% set content = content.split('</think>')[-1] %}{% endif %}"
    "{{'<｜Assistant｜>' + content + '<｜end▁of▁sentence｜>'}}{%- endif %}{%- endfor -%}"  # noqa: RUF001 - DeepSeek's real tokens use fullwidth bars
)


@pytest.mark.parametrize("template", [QWEN25_TOOLS, DEEPSEEK_R1], ids=["qwen2.5", "deepseek-r1"])
def test_more_real_world_templates_are_clean(template):
    assert [i for i in check_template(template) if i.severity >= Severity.MEDIUM] == []


def test_subscript_with_a_key_built_from_characters_is_flagged():
    payload = "{{ x[('%c%c'|format(95, 95)) ~ 'class' ~ ('%c%c'|format(95, 95))] }}"
    assert TemplateIssueKind.DYNAMIC_ATTRIBUTE in _kinds(payload)


def test_subscript_with_a_joined_key_is_flagged():
    assert TemplateIssueKind.DYNAMIC_ATTRIBUTE in _kinds("{{ x[parts|join] }}")


def test_plain_computed_index_is_not_flagged():
    assert check_template("{{ messages[loop.index0 - 1]['role'] }}") == []


# --- the conservative model: vocabulary, computed keys, calls (issue 11) --------------------

_ASSETS = Path(__file__).parents[2] / "assets" / "chat_templates"
_REAL_TEMPLATES = sorted(_ASSETS.glob("*.jinja"))


def test_the_real_template_set_is_not_empty():
    assert len(_REAL_TEMPLATES) >= 20


@pytest.mark.parametrize("path", _REAL_TEMPLATES, ids=lambda p: p.stem)
def test_every_reviewed_real_world_chat_template_has_no_issue_at_all(path):
    assert check_template(path.read_text(encoding="utf-8")) == []


def _worst(template: str) -> dict[TemplateIssueKind, Severity]:
    found: dict[TemplateIssueKind, Severity] = {}
    for issue in check_template(template):
        found[issue.kind] = max(issue.severity, found.get(issue.kind, Severity.INFO))
    return found


def test_names_built_from_variables_cve_2024_34359_pattern_is_high():
    # No dunder appears anywhere in the source: '_' * 2 builds it at render time.
    template = (
        "{% set u = '_' * 2 %}{% set c = u ~ 'class' ~ u %}{% set m = u ~ 'mro' ~ u %}"
        "{{ namespace[c][m] }}"
    )
    kinds = _worst(template)
    assert kinds[TemplateIssueKind.DYNAMIC_ATTRIBUTE] >= Severity.HIGH
    assert kinds[TemplateIssueKind.GLOBAL_MISUSE] >= Severity.HIGH


def test_a_subscript_keyed_by_a_joined_variable_is_high():
    template = "{% set k = ['_', '_', 'init', '_', '_']|join %}{{ messages[k] }}"
    assert _worst(template)[TemplateIssueKind.DYNAMIC_ATTRIBUTE] is Severity.HIGH


def test_a_data_key_whose_result_is_read_further_is_medium():
    template = "{% for k in messages[0] %}{{ messages[0][k].x }}{% endfor %}"
    assert _worst(template)[TemplateIssueKind.COMPUTED_KEY] is Severity.MEDIUM


def test_a_data_key_whose_result_is_only_printed_is_not_flagged():
    template = "{% set m = {'a': 'b'} %}{% for t in messages %}{{ m[t.type] }}{% endfor %}"
    assert check_template(template) == []


def test_arithmetic_on_loop_indices_is_a_safe_index():
    template = (
        "{% set ns = namespace(i=0) %}{% for m in messages %}{% set ns.i = loop.index0 + 1 %}"
        "{{ messages[ns.i - 1].content }}{% endfor %}"
    )
    assert check_template(template) == []


def test_a_field_outside_the_vocabulary_of_an_unknown_global_is_medium():
    assert _worst("{{ settings.SECRET_KEY }}")[TemplateIssueKind.UNVETTED_READ] is Severity.MEDIUM


def test_a_field_outside_the_vocabulary_of_conversation_data_is_allowed():
    # Public literal reads on dicts/lists/strings reach only data and bound methods.
    assert check_template("{% for m in messages %}{{ m.class }}{{ m.meta.tag }}{% endfor %}") == []


@pytest.mark.parametrize(
    "template",
    [
        "{{ '{0.__class__}'.format(messages) }}",
        "{{ messages[0].content.format(x) }}",
        "{{ messages.pop() }}",
    ],
)
def test_calls_of_methods_outside_the_vocabulary_are_high(template):
    assert _worst(template)[TemplateIssueKind.UNVETTED_CALL] >= Severity.HIGH


def test_calling_a_computed_value_is_high():
    assert _worst("{{ (messages|first)() }}")[TemplateIssueKind.UNVETTED_CALL] is Severity.HIGH


def test_calling_an_unknown_global_is_medium():
    assert _worst("{{ chr(95) }}")[TemplateIssueKind.UNVETTED_CALL] is Severity.MEDIUM


def test_a_global_function_passed_around_is_high():
    assert _worst("{% set f = namespace %}{{ f }}")[TemplateIssueKind.GLOBAL_MISUSE] is (
        Severity.HIGH
    )


@pytest.mark.parametrize(
    "template",
    [
        "{{ messages|map('attr', '__class__')|list }}",
        "{{ messages|selectattr('__class__')|list }}",
        "{{ messages|map(attribute='content.__class__')|list }}",
        "{{ messages|sort(attribute='_private')|list }}",
    ],
)
def test_attribute_names_given_to_filters_are_checked_like_attributes(template):
    assert max(i.severity for i in check_template(template)) >= Severity.HIGH


def test_a_filter_named_at_render_time_is_high():
    template = "{% set f = 'at' ~ 'tr' %}{{ messages|map(f, 'x')|list }}"
    assert _worst(template)[TemplateIssueKind.DYNAMIC_ATTRIBUTE] is Severity.HIGH


def test_a_repeated_string_is_folded_before_the_dunder_check():
    assert (
        _worst("{{ messages[('_' * 2) ~ 'class' ~ ('_' * 2)] }}")[TemplateIssueKind.DUNDER_ACCESS]
        is Severity.CRITICAL
    )


def test_asking_whether_a_renderer_function_is_defined_is_allowed():
    assert (
        check_template("{% if strftime_now is defined %}{{ strftime_now('%Y') }}{% endif %}") == []
    )


def test_an_underscore_variable_the_template_binds_itself_is_allowed():
    template = (
        "{% set _args = messages[0].arguments %}{% for k, v in _args.items() %}{{ k }}{% endfor %}"
    )
    assert check_template(template) == []


def test_an_underscore_name_the_renderer_would_provide_is_flagged():
    assert check_template("{{ _secret }}")


def test_a_computed_key_whose_result_passes_through_a_filter_and_is_read_is_medium():
    template = "{% for k in messages[0] %}{{ (messages[0][k]|default(0)).x }}{% endfor %}"
    assert _worst(template)[TemplateIssueKind.COMPUTED_KEY] is Severity.MEDIUM


def test_a_computed_key_whose_result_is_turned_into_text_is_not_flagged():
    template = "{% for k in messages[0] %}{{ messages[0][k]|tojson }}{% endfor %}"
    assert check_template(template) == []


def test_a_defaulted_index_is_not_mistaken_for_a_built_name():
    template = "{% set ns = namespace(i=0) %}{{ messages[ns.i|default(0)] }}"
    assert check_template(template) == []


def test_a_private_namespace_field_assignment_is_flagged():
    template = "{% set ns = namespace() %}{% set ns._hidden = 1 %}"
    assert _worst(template)[TemplateIssueKind.PRIVATE_ACCESS] is Severity.HIGH


def test_a_namespace_field_named_like_a_process_primitive_is_the_templates_own_data():
    template = "{% set ns = namespace(system='') %}{% set ns.system = 'x' %}{{ ns.system }}"
    assert check_template(template) == []
