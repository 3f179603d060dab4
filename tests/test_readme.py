"""Every README example runs as written.

The ``sh`` blocks run in order, each as one bash script, in a temporary directory against the
real CLI; the ``toml`` blocks are written there under the name their first line gives
(``# policy.toml``) and loaded the way mamori loads them. A command may answer yes or no
(exit 0 or 1); an error (2), "nothing to check" (3) or "command not found" fails the test.

A block that cannot run offline or in a test is preceded by
``<!-- readme-test: skip: <why> -->``; :data:`ALLOWED_SKIPS` keeps that list short on purpose.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"

ALLOWED_SKIPS = 6
"""make up/test, the background service walkthrough, a real HF pull, a real MLflow server,
scanning remote URLs, and the developer commands. Raise it only with a reason in the marker."""

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.MULTILINE | re.DOTALL)
_SKIP = re.compile(r"<!-- readme-test: skip: (.+?) -->\s*$")


@dataclass(frozen=True)
class Block:
    lang: str
    body: str
    line: int
    skip: str | None


def _blocks() -> list[Block]:
    text = README.read_text(encoding="utf-8")
    out = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        skip = _SKIP.search(before)
        out.append(
            Block(
                lang=match.group(1),
                body=match.group(2),
                line=text.count("\n", 0, match.start()) + 2,
                skip=skip.group(1) if skip else None,
            )
        )
    return out


def _logical_lines(block: Block):
    """(README line number, command) per command, joining backslash continuations."""
    pending, start = "", 0
    for offset, raw in enumerate(block.body.splitlines()):
        if not pending:
            start = block.line + offset
        if raw.rstrip().endswith("\\"):
            pending += raw.rstrip()[:-1] + " "
            continue
        command = pending + raw
        pending = ""
        if command.strip() and not command.lstrip().startswith("#"):
            yield start, command


def _script(block: Block) -> str:
    """The block as one bash script that stops at the first command answering neither 0 nor 1."""
    parts = ["set -u"]
    for line, command in _logical_lines(block):
        parts.append(command)
        where = shlex.quote(f"README.md:{line}: {command.strip()}")
        parts.append(
            f'__rc=$?; if [ "$__rc" -gt 1 ]; then echo {where}": exit $__rc" >&2; exit 90; fi'
        )
    return "\n".join(parts) + "\n"


def _toml_name(block: Block) -> str:
    first = block.body.splitlines()[0]
    assert re.fullmatch(r"# [\w.-]+\.toml", first), (
        f"README.md:{block.line}: a TOML example starts with '# <file>.toml'"
    )
    return first[2:]


def _write_samples(where: Path) -> None:
    """The files the examples name: a small torch checkpoint, a models/ tree, a safetensors."""
    import pickle

    torch = pytest.importorskip("torch")
    torch.save({"w": torch.zeros(2)}, where / "model.pt")
    (where / "models").mkdir()
    torch.save({"w": torch.zeros(2)}, where / "models" / "pytorch_model.bin")
    # Raw weights (ONNX external data): MAM-GEN-004, which the README's policy suppresses
    # for models/*.bin.
    (where / "models" / "weights.bin").write_bytes(bytes(range(256)) * 4)
    (where / "models" / "config.json").write_text('{"architectures": ["BertModel"]}')
    (where / "models" / "state.pkl").write_bytes(pickle.dumps({"step": 3}))
    from safetensors.numpy import save_file

    np = pytest.importorskip("numpy")
    save_file({"w": np.zeros(2, dtype=np.float32)}, str(where / "other.safetensors"))


def _entry_point_dir() -> str:
    found = Path(sys.executable).parent / "mamori"
    assert found.exists(), "the mamori console script is not installed next to python"
    return str(found.parent)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    where = tmp_path_factory.mktemp("readme")
    _write_samples(where)
    for block in _blocks():
        if block.lang == "toml" and block.skip is None:
            (where / _toml_name(block)).write_text(block.body, encoding="utf-8")
    # A store as `mamori serve` leaves it, for the audit examples.
    from mamori.store import Store

    store = Store(f"sqlite:///{where / '.mamori' / 'mamori.db'}")
    store.migrate()
    store.dispose()
    return where


def _env(workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAMORI_", "HF_"))}
    env["PATH"] = os.pathsep.join([_entry_point_dir(), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    env["HOME"] = str(workdir)
    env["NO_COLOR"] = "1"
    return env


_SH = [b for b in _blocks() if b.lang == "sh" and b.skip is None]
_TOML = [b for b in _blocks() if b.lang == "toml" and b.skip is None]


def test_only_a_short_justified_list_of_examples_is_skipped():
    skipped = [b for b in _blocks() if b.skip is not None]
    assert len(skipped) <= ALLOWED_SKIPS, [b.line for b in skipped]
    assert all(len(b.skip) > 20 for b in skipped)
    assert len(_SH) >= 3
    assert len(_TOML) >= 3


@pytest.mark.slow
@pytest.mark.parametrize("block", _SH, ids=lambda b: f"README.md:{b.line}")
def test_the_shell_example_runs_as_written(block, workdir):
    result = subprocess.run(
        ["bash", "-c", _script(block)],
        cwd=workdir,
        env=_env(workdir),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("block", _TOML, ids=lambda b: f"README.md:{b.line}")
def test_the_toml_example_loads_as_written(block, workdir, monkeypatch):
    name = _toml_name(block)
    path = workdir / name
    if name == "policy.toml":
        from mamori.scan.policy_file import load_policy

        policy = load_policy(path)
        # The example must scan on a machine without ClamAV or YARA.
        assert not policy.signatures.clamav.enabled
        assert not policy.signatures.yara.enabled
    elif name == "mamori.toml":
        from mamori.config import load_settings

        for key in [k for k in os.environ if k.startswith("MAMORI_")]:
            monkeypatch.delenv(key)
        monkeypatch.chdir(workdir)
        settings = load_settings()
        assert settings.port == 8750
    else:
        import tomllib

        assert tomllib.loads(path.read_text())  # used by a shell example below it


def test_every_configuration_variable_in_the_readme_is_a_mamori_toml_key():
    from mamori.config import Settings

    text = README.read_text(encoding="utf-8")
    variables = set(re.findall(r"`(MAMORI_[A-Z_]+)`", text)) - {"MAMORI_TOKEN"}
    keys = {v.removeprefix("MAMORI_").lower() for v in variables}
    assert keys <= set(Settings.model_fields), sorted(keys - set(Settings.model_fields))


@pytest.mark.slow
def test_the_readme_policy_suppresses_the_bin_file_inside_a_directory_scan(workdir):
    import json

    result = subprocess.run(
        ["mamori", "scan", "models/", "--policy", "policy.toml", "--format", "json"],
        cwd=workdir,
        env=_env(workdir),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    report = json.loads(result.stdout)["reports"][0]
    suppressed = [s["finding"]["rule_id"] for s in report["suppressed"]]
    assert "MAM-GEN-004" in suppressed
    assert "MAM-GEN-004" not in [f["rule_id"] for f in report["findings"]]
