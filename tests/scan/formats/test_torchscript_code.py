"""Static checks of TorchScript code/ files: parsed with ast, never compiled or run."""

from __future__ import annotations

import pytest

from mamori.scan.formats.torchscript_code import check_torchscript_code

PRINTED = b"""class Linear(Module):
  __parameters__ = ["weight", "bias", ]
  weight : Tensor
  packed : __torch__.torch.classes.quantized.LinearPackedParamsBase
  def forward(self: __torch__.torch.nn.modules.linear.Linear, input: Tensor) -> Tensor:
    _0 = torch.linear(input, self.weight, self.bias)
    return ops.quantized.linear_dynamic(_0, self.packed)
"""


def _rules(source: bytes) -> list[str]:
    return [issue.rule_id for issue in check_torchscript_code(source)]


def test_code_as_the_torchscript_printer_writes_it_is_clean():
    assert _rules(PRINTED) == []


@pytest.mark.parametrize(
    "call",
    [
        'torch.from_file("/etc/passwd", True, 4)',
        'torch.save(x, "/tmp/out")',
        'ops.aten.from_file("/etc/passwd")',
        'torch.ops.aten.save(x, "/tmp/out")',
        'ops.debugprims.load_tensor("t", [1], [1], dtype=6, device="cpu")',
    ],
)
def test_operators_that_open_files_are_critical(call):
    assert _rules(f"x = {call}\n".encode()) == ["MAM-TORCH-020"]


@pytest.mark.parametrize(
    "code",
    [
        "y = ops.evil_ns.run(x)\n",
        "y : __torch__.torch.classes.evil_ns.Thing = x\n",
    ],
)
def test_custom_operators_and_classes_need_a_native_library(code):
    assert _rules(code.encode()) == ["MAM-TORCH-021"]


@pytest.mark.parametrize(
    "code",
    [
        "import os\n",
        "from subprocess import run\n",
        "y = __import__('os')\n",
        "y = getattr(x, 'f')\n",
        "y = x.__class__\n",
        "y = torch._C\n",
        "torch.ops.load_library('libevil.so')\n",
    ],
)
def test_python_escape_hatches_mean_hand_edited_code(code):
    assert "MAM-TORCH-022" in _rules(code.encode())


@pytest.mark.parametrize("source", [b"def (:\n", b"\xff\xfe not utf-8", b"x = (" * 200 + b"\n"])
def test_unparseable_code_is_a_finding_not_a_crash(source):
    assert _rules(source) == ["MAM-TORCH-023"]


def test_code_is_never_executed(tmp_path):
    marker = tmp_path / "ran"
    check_torchscript_code(f"open({str(marker)!r}, 'w')\n".encode())
    assert not marker.exists()
