"""Regenerate the SavedModel test assets. Needs TensorFlow, which the test venv does not have.

Run in a throwaway venv, then check the diff (the graph bytes change between TF releases):

    python3 -m venv /tmp/tfvenv && /tmp/tfvenv/bin/pip install tensorflow-cpu
    /tmp/tfvenv/bin/python tests/assets/savedmodel/generate.py
    git status tests/assets/savedmodel

The malicious samples are harmless: the Python function returns its input, the read and
write target a path under /nonexistent that never exists. Nothing here is ever loaded by the
tests; they only scan the bytes.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import tensorflow as tf

HERE = Path(__file__).resolve().parent


class Benign(tf.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = tf.Variable([[1.0], [2.0]])

    @tf.function(input_signature=[tf.TensorSpec([None, 2], tf.float32)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.w)


class PyFunc(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([None], tf.float32)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.py_function(lambda v: v, [x], tf.float32)


class FileOps(tf.Module):
    @tf.function(input_signature=[tf.TensorSpec([], tf.string)])
    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        data = tf.io.read_file("/nonexistent/mamori-test/secret.txt")
        tf.io.write_file("/nonexistent/mamori-test/out.txt", x)
        return data


def save(module: tf.Module, name: str, *, whole_dir: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m"
        tf.saved_model.save(module, str(out))
        target = HERE / name
        shutil.rmtree(target, ignore_errors=True)
        if whole_dir:
            shutil.copytree(out, target)
            shutil.rmtree(target / "assets", ignore_errors=True)
        else:
            target.mkdir()
            shutil.copy(out / "saved_model.pb", target / "saved_model.pb")


if __name__ == "__main__":
    save(Benign(), "benign", whole_dir=True)
    save(PyFunc(), "py_function", whole_dir=False)
    save(FileOps(), "file_ops", whole_dir=False)
