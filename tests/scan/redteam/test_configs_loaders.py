"""Configs that make a loader run code: auto_map remote code and Keras Lambda layers.

Each test builds the model folder or archive as an attacker would, proves in a subprocess that
the real loader (``AutoConfig``/``AutoTokenizer`` with ``trust_remote_code=True``,
``keras.saving.load_model(P, safe_mode=False)``) runs the payload, and asserts mamori's verdict
is UNSAFE. The configs are pretty-printed (how Hugging Face and Keras folders are written),
which used to make them "unknown" to the scanner; ``custom_pipelines`` (``pipeline()`` with
``trust_remote_code=True``) is a second remote-code hook beside ``auto_map``.
"""

from __future__ import annotations

import codecs
import json
import marshal
import zipfile
from pathlib import Path

from mamori.findings import Verdict

# The loaders write the dynamic module cache under the test's folder, not the user's home.
_HF_CACHE = "import os\nos.environ['HF_MODULES_CACHE'] = os.path.join(os.path.dirname(P), 'hf')\n"
AUTO_CONFIG = _HF_CACHE + (
    "from transformers import AutoConfig\nAutoConfig.from_pretrained(P, trust_remote_code=True)"
)
AUTO_TOKENIZER = _HF_CACHE + (
    "from transformers import AutoTokenizer\n"
    "AutoTokenizer.from_pretrained(P, trust_remote_code=True)"
)


def _module_with_payload(attack, class_name: str, base: str) -> str:
    return (
        f"import os\nos.system({attack.payload_command()!r})\n"
        f"from transformers import {base}\n\n\nclass {class_name}({base}):\n"
        "    model_type = 'x-remote'\n"
    )


def test_a_pretty_printed_config_auto_map_runs_remote_code_and_is_unsafe(
    attack, verdict_of, tmp_path: Path
):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "configuration_x.py").write_text(
        _module_with_payload(attack, "XConfig", "PretrainedConfig")
    )
    config = {"model_type": "x-remote", "auto_map": {"AutoConfig": "configuration_x.XConfig"}}
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    assert attack.runs(AUTO_CONFIG, folder)
    assert verdict_of(folder) is Verdict.UNSAFE
    assert verdict_of(folder / "config.json") is Verdict.UNSAFE


def test_the_older_list_form_of_tokenizer_auto_map_runs_remote_code_and_is_unsafe(
    attack, verdict_of, tmp_path: Path
):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "bert"}, indent=2))
    (folder / "tokenization_x.py").write_text(
        _module_with_payload(attack, "XTokenizer", "PreTrainedTokenizer")
    )
    tokenizer_config = {"auto_map": ["tokenization_x.XTokenizer", None]}
    (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config, indent=2))
    assert attack.runs(AUTO_TOKENIZER, folder)
    assert verdict_of(folder) is Verdict.UNSAFE
    assert verdict_of(folder / "tokenizer_config.json") is Verdict.UNSAFE


PIPELINE = _HF_CACHE + (
    "from transformers import pipeline\npipeline(model=P, trust_remote_code=True)"
)


def test_custom_pipelines_in_a_config_run_remote_code_and_are_unsafe(
    attack, verdict_of, tmp_path: Path
):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "pipe_x.py").write_text(f"import os\nos.system({attack.payload_command()!r})\n")
    config = {
        "model_type": "bert",
        "custom_pipelines": {"my-task": {"impl": "pipe_x.MyPipeline", "pt": ["AutoModel"]}},
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    assert attack.runs(PIPELINE, folder)
    assert verdict_of(folder) is Verdict.UNSAFE


def _keras_config(attack) -> dict[str, object]:
    """A functional model whose Lambda layer runs the payload when the model is rebuilt.

    The layout is what keras.Model.save writes; the code is keras' func_dump of a lambda
    (base64 of marshalled bytecode), made here without importing keras.
    """
    command = attack.payload_command()
    function = eval(f"lambda x: (__import__('os').system({command!r}), x)[1]")
    code = codecs.encode(marshal.dumps(function.__code__), "base64").decode("ascii")
    lam = {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}}
    tensor = {"shape": [None, 2], "dtype": "float32", "keras_history": ["input_layer", 0, 0]}
    layers = [
        {
            "module": "keras.layers",
            "class_name": "InputLayer",
            "config": {"batch_shape": [None, 2], "dtype": "float32", "name": "input_layer"},
            "registered_name": None,
            "name": "input_layer",
            "inbound_nodes": [],
        },
        {
            "module": "keras.layers",
            "class_name": "Lambda",
            "config": {"name": "lambda", "function": lam, "arguments": {}},
            "registered_name": None,
            "build_config": {"input_shape": [None, 2]},
            "name": "lambda",
            "inbound_nodes": [
                {
                    "args": [{"class_name": "__keras_tensor__", "config": tensor}],
                    "kwargs": {"mask": None},
                }
            ],
        },
    ]
    return {
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": {
            "name": "functional",
            "trainable": True,
            "layers": layers,
            "input_layers": ["input_layer", 0, 0],
            "output_layers": ["lambda", 0, 0],
        },
        "registered_name": "Functional",
    }


def test_a_keras_archive_holding_only_config_json_runs_its_lambda_and_is_unsafe(
    attack, verdict_of, tmp_path: Path
):
    path = tmp_path / "model.keras"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("config.json", json.dumps(_keras_config(attack)))
    assert attack.runs("keras-unsafe", path, timeout=300)
    assert verdict_of(path) is Verdict.UNSAFE


def test_a_keras_model_folder_runs_its_lambda_and_is_unsafe(attack, verdict_of, tmp_path: Path):
    folder = tmp_path / "keras_model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(_keras_config(attack), indent=2))
    assert attack.runs("keras-unsafe", folder, timeout=300)
    assert verdict_of(folder) is Verdict.UNSAFE
