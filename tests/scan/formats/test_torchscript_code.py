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


# --- getattr on submodules (corpus sample torchscript-trace) ----------------------------------


def _container_model():
    torch = pytest.importorskip("torch")
    nn = torch.nn

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Sequential(nn.Linear(4, 2)))
            self.heads = nn.ModuleList([nn.Linear(2, 2), nn.Linear(2, 2)])

        def forward(self, x):
            x = self.layers(x)
            for head in self.heads:
                x = head(x)
            return x

    return torch, Net().eval()


def _saved_code(build) -> dict[str, bytes]:
    import io
    import warnings
    import zipfile

    torch, net = _container_model()
    with warnings.catch_warnings():
        # torch.jit is deprecated upstream; building samples with it is the point here.
        warnings.simplefilter("ignore")
        module = build(torch, net)
        buf = io.BytesIO()
        torch.jit.save(module, buf)
    with zipfile.ZipFile(io.BytesIO(buf.getvalue())) as zf:
        return {n: zf.read(n) for n in zf.namelist() if n.endswith(".py")}


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda torch, net: torch.jit.trace(net, torch.zeros(1, 4)), id="traced"),
        pytest.param(lambda torch, net: torch.jit.script(net), id="scripted"),
    ],
)
def test_getattr_on_numbered_submodules_as_torch_writes_it_is_clean(build):
    code = _saved_code(build)
    assert any(b'getattr(self, "0")' in source for source in code.values())
    assert {name: _rules(source) for name, source in code.items()} == {name: [] for name in code}


def _method(body: str) -> bytes:
    """``body`` as the statements of a printed ``forward(self, x, name)`` method."""
    head = "class M(Module):\n  def forward(self: M, x: Tensor, name: str) -> Tensor:\n"
    return f"{head}    {body}\n    return x\n".encode()


@pytest.mark.parametrize(
    "body",
    [
        '_0 = getattr(self, "0")',
        'heads = self.heads\n    _1 = getattr(heads, "1")',
        '_2 = getattr(getattr(self.layers, "2"), "0")',
        'a = self.a\n    a = getattr(self, "1")\n    _0 = getattr(a, "0")',
    ],
)
def test_getattr_of_a_constant_name_on_self_or_a_submodule_is_clean(body):
    assert _rules(_method(body)) == []


@pytest.mark.parametrize(
    "body",
    [
        'f = getattr(torch, "load")',  # a module
        'f = getattr(ops.aten, "from_file")',  # an operator namespace
        'f = getattr(builtins, "eval")',  # builtins (also flagged on its own)
        "f = getattr(self, name)",  # a computed name
        'f = getattr(self, "ev" + "al")',  # a computed name
        'f = getattr(self, "__class__")',  # a dunder
        'f = getattr(self, "__init__")',  # a dunder not in the attribute list
        'f = getattr(self, "0", None)',  # a default: the printer never writes one
        'f = getattr(x, "0")',  # a parameter, not a submodule
        'm = torch\n    f = getattr(m, "load")',  # a local bound to a module
        'm = self.heads\n    m = torch\n    f = getattr(m, "load")',  # rebound to a module
        'for m in [torch]:\n      f = getattr(m, "load")',  # a loop variable
        'a = b\n    b = a\n    f = getattr(a, "0")',  # a cycle proves nothing
        'self = torch\n    f = getattr(self, "load")',  # self rebound
        "f = getattr(*args)",  # unpacked arguments
        'f = getattr(self, obj="0")',  # keywords
    ],
)
def test_getattr_that_may_reach_anything_but_a_submodule_stays_flagged(body):
    assert "MAM-TORCH-022" in _rules(_method(body))


def test_getattr_on_self_outside_a_method_stays_flagged():
    code = 'def forward(self, x):\n  return getattr(self, "0")(x)\n'
    assert _rules(code.encode()) == ["MAM-TORCH-022"]


def test_getattr_rebound_to_something_else_stays_flagged():
    assert "MAM-TORCH-022" in _rules(_method('getattr = torch.load\n    _0 = getattr(self, "0")'))


def test_getattr_hidden_in_a_nested_lambda_does_not_inherit_self():
    assert _rules(_method('f = lambda self: getattr(self, "0")')) == ["MAM-TORCH-022"]
