"""Jinja2 template injection (CVE-2024-34359 family) wherever a template can sit.

Each test writes a template whose payload creates the marker, renders it in a subprocess the
way llama-cpp-python did before its fix (``jinja2.Environment().from_string(t).render(...)``,
no sandbox), checks that the marker appeared, and asserts mamori's verdict is UNSAFE.

The payloads spell no dunder, no ``os``/``system`` attribute and no gadget global: every name
is built at render time from ``'_' * 2`` and string pieces and reached through subscripts of
``namespace`` (the issue's "builds names from variables" technique), so a check that only
looks for dangerous literals passes them.
"""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np

from mamori.findings import Verdict

# The chain namespace -> __init__ -> __globals__ -> __builtins__ -> __import__ -> os -> system,
# each key built from variables; Jinja's getitem falls back to getattr for the first step.
BUILT_NAMES = (
    "{{% set u = '_' * 2 %}}{{% set i = u ~ 'in' ~ 'it' ~ u %}}"
    "{{% set g = u ~ 'glo' ~ 'bals' ~ u %}}{{% set b = u ~ 'buil' ~ 'tins' ~ u %}}"
    "{{% set m = u ~ 'imp' ~ 'ort' ~ u %}}{{% set o = 'o' ~ 's' %}}{{% set s = 'sys' ~ 'tem' %}}"
    "{{% for message in messages %}}{{{{ message['role'] }}}}: {{{{ message['content'] }}}}"
    "{{% endfor %}}{{{{ namespace[i][g][b][m](o)[s]('{command}') }}}}"
)
BENIGN = (
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>\\n' }}{% endfor %}"
)

# What a victim server does with the template it found: render it unsandboxed.
RENDER = """
import jinja2
jinja2.Environment().from_string(TEMPLATE).render(
    messages=[{"role": "user", "content": "hi"}], add_generation_prompt=True
)
"""


def _render_loader(read_template: str) -> str:
    return read_template + RENDER


def _hostile(attack) -> str:
    return BUILT_NAMES.format(command=attack.payload_command())


def test_built_names_in_a_pretty_printed_tokenizer_config_run_and_are_unsafe(
    attack, verdict_of, tmp_path: Path
):
    path = tmp_path / "tokenizer_config.json"
    document = {"chat_template": _hostile(attack), "eos_token": "</s>"}
    path.write_text(json.dumps(document, indent=2))
    loader = "import json\nTEMPLATE = json.load(open(P))['chat_template']"
    assert attack.runs(_render_loader(loader), path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_built_names_in_a_named_chat_template_list_run_and_are_unsafe(
    attack, verdict_of, tmp_path: Path
):
    path = tmp_path / "tokenizer_config.json"
    named = [{"name": "default", "template": BENIGN}, {"name": "tool_use", "template": ""}]
    named[1]["template"] = _hostile(attack)
    path.write_text(json.dumps({"chat_template": named}, indent=2))
    loader = (
        "import json\nTEMPLATE = {t['name']: t['template'] "
        "for t in json.load(open(P))['chat_template']}['tool_use']"
    )
    assert attack.runs(_render_loader(loader), path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_built_names_under_custom_chat_template_run_and_are_unsafe(
    attack, verdict_of, tmp_path: Path
):
    path = tmp_path / "tokenizer_config.json"
    document = {"chat_template": BENIGN, "custom_chat_template": _hostile(attack)}
    path.write_text(json.dumps(document, indent=2))
    loader = "import json\nTEMPLATE = json.load(open(P))['custom_chat_template']"
    assert attack.runs(_render_loader(loader), path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_built_names_in_a_gguf_chat_template_run_and_are_unsafe(attack, verdict_of, tmp_path: Path):
    path = tmp_path / "model.gguf"
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_string("tokenizer.chat_template", _hostile(attack))
    writer.add_tensor("tok_embd", np.ones((3, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # llama-cpp-python read the metadata and rendered tokenizer.chat_template as is.
    loader = (
        "import gguf\nfield = gguf.GGUFReader(P).fields['tokenizer.chat_template']\n"
        "TEMPLATE = bytes(field.parts[field.data[0]]).decode()"
    )
    assert attack.runs(_render_loader(loader), path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_built_names_in_a_standalone_chat_template_jinja_run_and_are_unsafe(
    attack, verdict_of, tmp_path: Path
):
    path = tmp_path / "chat_template.jinja"
    path.write_text(_hostile(attack))
    assert attack.runs(_render_loader("TEMPLATE = open(P).read()"), path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_built_names_in_a_yaml_config_run_and_are_unsafe(attack, verdict_of, tmp_path: Path):
    import yaml

    path = tmp_path / "serving.yaml"
    path.write_text(yaml.safe_dump({"model": "x", "prompt": {"template": _hostile(attack)}}))
    loader = "import yaml\nTEMPLATE = yaml.safe_load(open(P))['prompt']['template']"
    assert attack.runs(_render_loader(loader), path)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_benign_template_rendered_the_same_way_runs_nothing_and_is_safe(
    attack, verdict_of, tmp_path: Path
):
    path = tmp_path / "tokenizer_config.json"
    path.write_text(json.dumps({"chat_template": BENIGN}, indent=2))
    loader = "import json\nTEMPLATE = json.load(open(P))['chat_template']"
    assert not attack.runs(_render_loader(loader), path)
    assert verdict_of(path) is Verdict.SAFE
