"""The format handlers, one module per format, registered here by explicit import.

There is no plugin discovery by name on purpose: a handler that fails to import must break the
build, not silently drop out of every scan (modelscan's failure mode).
"""

from __future__ import annotations

from mamori.scan.formats import (
    compressed,
    flax,
    gguf,
    hdf5,
    joblib,
    keras,
    nemo,
    numpy,
    onnx,
    onnx_tensor,
    safetensors,
    savedmodel,
    sevenzip,
    torch,
    torch_legacy,
)
from mamori.scan.formats import tar as tar_format
from mamori.scan.formats import zip as zip_format
from mamori.scan.formats.interface import FormatHandler
from mamori.scan.formats.jsonfile import JsonHandler
from mamori.scan.formats.pickle import PickleHandler
from mamori.scan.formats.template import TemplateHandler
from mamori.scan.formats.yamlfile import YamlHandler

__all__ = ["HANDLERS"]

HANDLERS: tuple[FormatHandler, ...] = (
    # --- pickle family (scan/pickle + torch, joblib, numpy) ---
    torch.TorchZipHandler(),
    torch.TorchScriptHandler(),
    torch_legacy.TorchLegacyHandler(),
    torch_legacy.TorchTarHandler(),
    joblib.JoblibHandler(),
    numpy.NumpyHandler(),
    numpy.NumpyNpzHandler(),
    PickleHandler(),
    # --- containers (zip, tar, compression, 7z) ---
    zip_format.ZipHandler(),
    tar_format.TarHandler(),
    compressed.GzipHandler(),
    compressed.Bzip2Handler(),
    compressed.XzHandler(),
    compressed.LzmaHandler(),
    compressed.ZlibHandler(),
    compressed.JoblibZfileHandler(),
    compressed.ZstdHandler(),
    compressed.Lz4Handler(),
    sevenzip.SevenZipHandler(),
    # --- model formats (keras, tf, onnx, safetensors, gguf, nemo, flax) ---
    safetensors.SafetensorsHandler(),
    gguf.GGUFHandler(),
    onnx.OnnxHandler(),
    onnx_tensor.OnnxTensorHandler(),
    flax.FlaxMsgpackHandler(),
    keras.KerasV3Handler(),
    hdf5.Hdf5Handler(),
    hdf5.KerasH5Handler(),
    savedmodel.SavedModelHandler(),
    nemo.NemoHandler(),
    # --- configs and templates (json, yaml, jinja) ---
    JsonHandler(),
    YamlHandler(),
    TemplateHandler(),
)
