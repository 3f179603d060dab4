"""What users of ModelAudit and pip-audit expect around the CLI: --version, completion, the
pre-commit hooks, the GitHub Action, LICENSE and CHANGELOG."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from mamori import __version__
from mamori.cli import app
from mamori.cli.exitcodes import EXIT_NOTHING_TO_CHECK, EXIT_SAFE, EXIT_UNSAFE
from mamori.scan.rules import RULESET_VERSION

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


class _Reduce:
    def __reduce__(self):
        import os

        return (os.system, ("true",))


def _entry_point() -> str:
    found = Path(sys.executable).parent / "mamori"
    if found.exists():
        return str(found)
    which = shutil.which("mamori")
    assert which is not None, "the mamori console script is not installed"
    return which


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAMORI_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")])
    return env


def test_version_names_the_package_and_the_ruleset():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == EXIT_SAFE
    assert result.stdout.splitlines()[0] == f"mamori {__version__}"
    assert f"ruleset {RULESET_VERSION}" in result.stdout


def test_shell_completion_is_offered():
    result = runner.invoke(app, ["--show-completion", "bash"])
    assert result.exit_code == EXIT_SAFE
    assert "complete" in result.stdout
    assert "mamori" in result.stdout.lower()


def test_the_license_is_the_apache_2_text_pyproject_declares():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License\n                           Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text
    assert 'license = "Apache-2.0"' in (ROOT / "pyproject.toml").read_text()


def test_the_changelog_has_an_entry_for_the_current_version():
    text = (ROOT / "CHANGELOG.md").read_text()
    assert f"## [{__version__}]" in text
    assert "## [Unreleased]" in text


def _hooks():
    return {h["id"]: h for h in yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())}


@pytest.mark.parametrize(
    ("name", "selected"),
    [
        ("models/model.pt", True),
        ("pytorch_model.BIN", True),
        ("weights.safetensors", True),
        ("m/tokenizer_config.json", True),
        ("data/model.gguf", True),
        ("src/app.py", False),
        ("README.md", False),
        ("package.json", False),
    ],
)
def test_the_pre_commit_hook_selects_model_files(name, selected):
    hook = _hooks()["mamori-scan"]
    assert bool(re.search(hook["files"], name)) is selected


def test_the_pre_commit_hook_entry_fails_a_commit_with_a_malicious_pickle(tmp_path):
    # pre-commit runs `entry` with the selected file names appended.
    (tmp_path / "ok.pkl").write_bytes(pickle.dumps({"w": [1.0]}))
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps(_Reduce()))
    for hook in _hooks().values():
        assert hook["language"] == "python"
        entry = hook["entry"].split()
        assert entry[0] == "mamori"
        base = [_entry_point(), *entry[1:]]
        ok = subprocess.run([*base, "ok.pkl"], cwd=tmp_path, env=_env(), check=False, timeout=120)
        bad = subprocess.run(
            [*base, "ok.pkl", "evil.pkl"], cwd=tmp_path, env=_env(), check=False, timeout=120
        )
        assert (ok.returncode, bad.returncode) == (EXIT_SAFE, EXIT_UNSAFE)


def _action_steps():
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert action["runs"]["using"] == "composite"
    return {s.get("id") or s.get("name"): s for s in action["runs"]["steps"]}


def test_the_action_uploads_the_sarif_even_when_the_scan_fails():
    upload = _action_steps()["Upload SARIF"]
    assert upload["uses"].startswith("github/codeql-action/upload-sarif@")
    assert "always()" in upload["if"]


def _run_scan_step(tmp_path, **inputs):
    step = _action_steps()["scan"]
    # Inputs reach the script only through `env:`; check none is pasted into the script.
    assert "${{" not in step["run"]
    output = tmp_path / "github_output"
    output.write_text("")
    env = _env() | {
        "INPUT_PATHS": inputs.get("paths", "."),
        "INPUT_FAIL_ON": inputs.get("fail_on", ""),
        "INPUT_POLICY": inputs.get("policy", ""),
        "INPUT_SARIF_FILE": "out.sarif",
        "GITHUB_OUTPUT": str(output),
        "MAMORI_BIN": _entry_point(),
    }
    subprocess.run(["bash", "-c", step["run"]], cwd=tmp_path, env=env, check=True, timeout=120)
    return output.read_text()


def test_the_action_scan_step_writes_sarif_and_reports_the_exit_code(tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "evil.pkl").write_bytes(pickle.dumps(_Reduce()))
    assert _run_scan_step(tmp_path, paths="models") == f"exit-code={EXIT_UNSAFE}\n"
    assert '"ruleId": "MAM-PKL-001"' in (tmp_path / "out.sarif").read_text()


def test_the_action_scan_step_reports_an_empty_checkout(tmp_path):
    (tmp_path / "empty").mkdir()
    assert _run_scan_step(tmp_path, paths="empty") == f"exit-code={EXIT_NOTHING_TO_CHECK}\n"


@pytest.mark.parametrize(
    ("code", "fail", "expected"),
    [("0", "true", 0), ("1", "true", 1), ("1", "false", 0), ("2", "false", 2), ("3", "false", 3)],
)
def test_the_action_verdict_step_fails_on_errors_whatever_the_fail_input(code, fail, expected):
    step = _action_steps()["Verdict"]
    result = subprocess.run(
        ["bash", "-c", step["run"]], env={"CODE": code, "FAIL": fail}, check=False, timeout=30
    )
    assert result.returncode == expected


def _commands(group, prefix=()):
    import typer.main

    command = typer.main.get_command(group) if not prefix else group
    for name, sub in getattr(command, "commands", {}).items():
        if getattr(sub, "commands", None):
            yield from _commands(sub, (*prefix, name))
        else:
            yield (*prefix, name)


def test_the_cli_has_the_twenty_commands_the_readme_counts():
    assert len(list(_commands(app))) >= 20


@pytest.mark.parametrize("command", list(_commands(app)), ids=" ".join)
def test_every_help_page_lists_its_exit_codes(command):
    result = runner.invoke(app, [*command, "--help"], terminal_width=200)
    assert result.exit_code == EXIT_SAFE, result.output
    text = " ".join(result.stdout.split())
    assert "Exit codes: 0 = " in text
    assert "2 = " in text


def test_policy_test_help_shows_the_case_format_intact():
    result = runner.invoke(app, ["policy", "test", "--help"], terminal_width=200)
    assert "[[case]]" in result.stdout
    assert 'roles = ["approver"]' in result.stdout
    assert "[]" not in result.stdout.replace('["approver"]', "")
