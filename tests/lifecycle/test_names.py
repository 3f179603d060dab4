"""Issue 14 item 4: every name a binding stores passes one rule, whichever path it came by."""

from __future__ import annotations

import pytest

from mamori.lifecycle import Lifecycle
from mamori.text import InvalidNameError, check_name

from .conftest import BENIGN, make_principal

IMPORTER = make_principal("ivan", "importer")
BAD = ["m\x1b[31m", "m\nforged", "m\x00", "m\u202e", "m\u200b", " m", "m\t", "x" * 513, ""]


@pytest.mark.parametrize("bad", BAD)
def test_the_name_rule_refuses_controls_bidi_invisibles_padding_and_overlong_names(bad):
    with pytest.raises(InvalidNameError) as caught:
        check_name(bad)
    assert caught.value.diagnostics().isprintable()


@pytest.mark.parametrize("good", ["model.pkl", "org/repo", "résumé v2.bin", "模型.safetensors"])
def test_ordinary_names_pass_unchanged(good):
    assert check_name(good) == good


@pytest.mark.parametrize("field", ["name", "version", "member_path", "source"])
def test_register_refuses_a_bad_name_from_any_integration(lifecycle: Lifecycle, tmp_path, field):
    path = tmp_path / "m.pkl"
    path.write_bytes(BENIGN)
    blob = lifecycle.blobs.put_file(path)
    names = {"source": "mlflow", "name": "m", "version": "1", "member_path": "a/m.pkl"}
    names[field] = "evil\x1b]0;owned\x07"
    with pytest.raises(InvalidNameError, match=field):
        lifecycle.register(IMPORTER, blob, **names)
    assert lifecycle.list_artifacts(make_principal("v", "viewer")).total == 0


def test_import_file_refuses_a_bad_name_before_storing_a_byte(lifecycle: Lifecycle, tmp_path):
    path = tmp_path / "m.pkl"
    path.write_bytes(BENIGN)
    with pytest.raises(InvalidNameError):
        lifecycle.import_file(IMPORTER, path, name="m\u202egpj.pkl")
    assert [p for p in lifecycle.blobs.root.rglob("*") if p.is_file()] == []
