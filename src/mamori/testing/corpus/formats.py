"""Samples for the non-pickle model formats: safetensors, GGUF, ONNX, HDF5 and Keras.

Built with the real writer libraries where one is installed (safetensors, gguf, onnx, h5py).
Expected rule ids are exact; a ``PREFIX*`` entry (see :class:`~mamori.testing.corpus.Sample`)
is the way to add a sample before its scanner's ids are settled.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import struct
from pathlib import Path
from typing import Any

from mamori.testing.corpus._model import Spec, spec
from mamori.testing.corpus._zipw import Entry, write_zip

__all__ = ["SPECS"]

_TEMPLATE_RCE = "MAM-TPL-001"
_KERAS_LAMBDA = "MAM-KERAS-001"

_CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}"
    "</s>\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
# CVE-2024-34359 (llama-cpp-python "Llama Drama"): a GGUF chat template rendered by an
# unsandboxed Jinja2 environment walks from a template global to os.popen.
_EVIL_TEMPLATE = "{{ cycler.__init__.__globals__.os.popen('true').read() }}"


def _np() -> Any:
    import numpy as np  # noqa: PLC0415 - optional dependency

    return np


# --- safetensors ----------------------------------------------------------------------------


@spec(
    "safetensors-basic",
    "safetensors/model.safetensors",
    family="safetensors",
    technique="safetensors.numpy.save_file with metadata",
    needs=("safetensors", "numpy"),
)
def _st_benign(path: Path) -> None:
    from safetensors.numpy import save  # noqa: PLC0415

    np = _np()
    tensors = {
        "w": np.arange(12, dtype=np.float32).reshape(3, 4),
        "b": np.zeros(3, dtype=np.float16),
        "ids": np.arange(5, dtype=np.int64),
    }
    path.write_bytes(_sorted_header(save(tensors, metadata={"format": "np", "name": "tiny"})))


def _sorted_header(data: bytes) -> bytes:
    """Re-emit the JSON header with sorted keys and the same length.

    The Rust writer's map order varies from run to run. The header is plain JSON; no tensor
    is touched.
    """
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    blob = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return data[:8] + blob.ljust(length) + data[8 + length :]


def _st_raw(header: dict[str, Any], data: bytes) -> bytes:
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    return struct.pack("<Q", len(blob)) + blob + data


@spec(
    "safetensors-overlapping-tensors",
    "safetensors/overlap.safetensors",
    family="safetensors",
    technique="two tensors whose data_offsets overlap (safetensors validates this; hand-rolled "
    "readers may not)",
    expected=["MAM-ST-003"],
)
def _st_overlap(path: Path) -> None:
    header = {
        "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
        "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
    }
    path.write_bytes(_st_raw(header, bytes(12)))


@spec(
    "safetensors-trailing-pickle",
    "safetensors/trailing.safetensors",
    family="safetensors",
    technique="a pickle appended after the last tensor: bytes no tensor covers",
    expected=["MAM-ST-004"],
)
def _st_trailing(path: Path) -> None:
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}
    path.write_bytes(_st_raw(header, bytes(8)) + b"\x80\x02cos\nsystem\n(X\x04\x00\x00\x00truetR.")


# --- GGUF -----------------------------------------------------------------------------------


def _gguf(path: Path, template: str) -> None:
    import gguf  # noqa: PLC0415 - optional dependency

    np = _np()
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(64)
    writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", np.arange(32, dtype=np.float32).reshape(4, 8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@spec(
    "gguf-basic",
    "gguf/model.gguf",
    family="gguf",
    technique="gguf.GGUFWriter: one f32 tensor and an ordinary Jinja chat template",
    needs=("gguf", "numpy"),
)
def _gguf_benign(path: Path) -> None:
    _gguf(path, _CHAT_TEMPLATE)


@spec(
    "gguf-chat-template-ssti",
    "gguf/ssti.gguf",
    family="gguf",
    technique="chat template cycler.__init__.__globals__.os.popen (CVE-2024-34359, "
    "llama-cpp-python)",
    expected=[_TEMPLATE_RCE],
    needs=("gguf", "numpy"),
)
def _gguf_ssti(path: Path) -> None:
    _gguf(path, _EVIL_TEMPLATE)


@spec(
    "gguf-chat-template-subclasses",
    "gguf/subclasses.gguf",
    family="gguf",
    technique="chat template walking ''.__class__.__mro__[1].__subclasses__() to a gadget",
    expected=[_TEMPLATE_RCE],
    needs=("gguf", "numpy"),
)
def _gguf_subclasses(path: Path) -> None:
    _gguf(path, "{{ ''.__class__.__mro__[1].__subclasses__()[0].__init__.__globals__ }}")


# --- ONNX -----------------------------------------------------------------------------------


def _onnx_model(external: str | None) -> bytes:
    import onnx  # noqa: PLC0415 - optional dependency
    from onnx import TensorProto, helper  # noqa: PLC0415

    weight = helper.make_tensor("w", TensorProto.FLOAT, [2], [1.0, 2.0])
    if external is not None:
        weight.ClearField("float_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", external), ("offset", "0"), ("length", "8")):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("Add", ["x", "w"], ["y"])],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])],
        initializer=[weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if external is None:
        onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


@spec(
    "onnx-basic",
    "onnx/model.onnx",
    family="onnx",
    technique="onnx.helper graph: Add with one initializer",
    needs=("onnx",),
)
def _onnx_benign(path: Path) -> None:
    path.write_bytes(_onnx_model(None))


@spec(
    "onnx-external-data-traversal",
    "onnx/external-traversal.onnx",
    family="onnx",
    technique="initializer with external data location ../../etc/passwd: loading reads a "
    "file outside the model directory (CVE-2022-25882, onnx path traversal)",
    expected=["MAM-ONNX-002"],
    needs=("onnx",),
)
def _onnx_traversal(path: Path) -> None:
    path.write_bytes(_onnx_model("../../etc/passwd"))


# --- HDF5 and Keras -------------------------------------------------------------------------


def _dense_layers() -> list[dict[str, Any]]:
    return [
        {
            "module": "keras.layers",
            "class_name": "InputLayer",
            "config": {"batch_shape": [None, 4], "dtype": "float32", "name": "input_layer"},
            "registered_name": None,
        },
        {
            "module": "keras.layers",
            "class_name": "Dense",
            "config": {"name": "dense", "units": 2, "activation": "linear", "use_bias": True},
            "registered_name": None,
        },
    ]


def _lambda_layer() -> dict[str, Any]:
    code = base64.b64encode(marshal.dumps(compile("lambda x: x", "<corpus>", "eval"))).decode()
    return {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {
            "name": "lambda",
            "function": {
                "class_name": "__lambda__",
                "config": {"code": code, "defaults": None, "closure": None},
            },
        },
        "registered_name": None,
    }


def _keras_config(layers: list[dict[str, Any]]) -> bytes:
    config = {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "sequential", "layers": layers},
        "registered_name": None,
    }
    return json.dumps(config, sort_keys=True).encode()


def _weights_h5() -> bytes:
    import h5py  # noqa: PLC0415 - optional dependency

    buf = io.BytesIO()
    with h5py.File(buf, "w", track_order=True) as f:
        group = f.create_group("layers/dense/vars")
        np = _np()
        group.create_dataset("0", data=np.ones((4, 2), dtype=np.float32), track_times=False)
        group.create_dataset("1", data=np.zeros(2, dtype=np.float32), track_times=False)
    return buf.getvalue()


def _keras_v3(layers: list[dict[str, Any]]) -> bytes:
    meta = json.dumps({"keras_version": "3.6.0", "date_saved": "2026-01-01@00:00:00"}).encode()
    return write_zip(
        [
            Entry("metadata.json", meta, deflate=True),
            Entry("config.json", _keras_config(layers), deflate=True),
            Entry("model.weights.h5", _weights_h5()),
        ]
    )


@spec(
    "keras-v3-dense",
    "keras/dense.keras",
    family="keras",
    technique="Keras 3 .keras zip: config.json, metadata.json, model.weights.h5",
    needs=("h5py", "numpy"),
)
def _keras_benign(path: Path) -> None:
    path.write_bytes(_keras_v3(_dense_layers()))


@spec(
    "keras-v3-lambda",
    "keras/lambda.keras",
    family="keras",
    technique="Keras 3 Lambda layer with marshalled bytecode (CVE-2024-3660, safe_mode bypass "
    "family)",
    expected=[_KERAS_LAMBDA],
    needs=("h5py", "numpy"),
)
def _keras_lambda(path: Path) -> None:
    path.write_bytes(_keras_v3([*_dense_layers(), _lambda_layer()]))


def _keras_h5(path: Path, layers: list[dict[str, Any]]) -> None:
    import h5py  # noqa: PLC0415

    with h5py.File(path, "w", track_order=True) as f:
        f.attrs["keras_version"] = "2.15.0"
        f.attrs["backend"] = "tensorflow"
        f.attrs["model_config"] = _keras_config(layers).decode()
        weights = f.create_group("model_weights")
        np = _np()
        weights.create_dataset("dense/kernel", data=np.ones((4, 2)), track_times=False)


@spec(
    "keras-h5-dense",
    "keras/dense.h5",
    family="keras",
    technique="legacy Keras HDF5 model: model_config attribute plus weights",
    needs=("h5py", "numpy"),
)
def _keras_h5_benign(path: Path) -> None:
    _keras_h5(path, _dense_layers())


@spec(
    "keras-h5-lambda",
    "keras/lambda.h5",
    family="keras",
    technique="legacy Keras HDF5 model whose model_config holds a marshalled Lambda "
    "(CVE-2024-3660)",
    expected=[_KERAS_LAMBDA],
    needs=("h5py", "numpy"),
)
def _keras_h5_lambda(path: Path) -> None:
    _keras_h5(path, [*_dense_layers(), _lambda_layer()])


@spec(
    "hdf5-datasets",
    "hdf5/data.h5",
    family="hdf5",
    technique="plain HDF5 file with two numeric datasets",
    needs=("h5py", "numpy"),
)
def _hdf5(path: Path) -> None:
    import h5py  # noqa: PLC0415

    np = _np()
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(10.0), track_times=False)
        f.create_dataset("y", data=np.arange(6).reshape(2, 3), track_times=False)


SPECS: tuple[Spec, ...] = (
    _st_benign,
    _st_overlap,
    _st_trailing,
    _gguf_benign,
    _gguf_ssti,
    _gguf_subclasses,
    _onnx_benign,
    _onnx_traversal,
    _keras_benign,
    _keras_lambda,
    _keras_h5_benign,
    _keras_h5_lambda,
    _hdf5,
)
