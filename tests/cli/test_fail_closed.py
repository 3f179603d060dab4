"""The first hour fails closed: no store, an empty tree and a denylisted allow are never "fine".

Each test first shows the fail-open behaviour the default used to have would be an easy
mistake (a pickle that runs ``os.system`` through ``posix.system``), then that mamori refuses.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from mamori.cli import app
from mamori.cli.exitcodes import (
    EXIT_CHECK_FAILED,
    EXIT_ERROR,
    EXIT_NOTHING_TO_CHECK,
    EXIT_SAFE,
    EXIT_UNSAFE,
)
from mamori.scan.policy import OVERRIDE_NOTE_PREFIX

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    for name in [n for n in os.environ if n.startswith("MAMORI_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


class _PosixSystem:
    """Pickles as GLOBAL posix.system + REDUCE: the os.system payload under its POSIX name."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        import posix

        return (posix.system, (self.command,))


def test_exit_codes_never_share_a_meaning():
    assert len({EXIT_SAFE, EXIT_UNSAFE, EXIT_ERROR, EXIT_NOTHING_TO_CHECK}) == 4
    assert EXIT_CHECK_FAILED == EXIT_UNSAFE


def test_audit_verify_without_a_store_fails_with_its_own_code_and_creates_nothing(workdir):
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == EXIT_NOTHING_TO_CHECK, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no mamori store at" in lines[0]
    assert "mamori.db" in lines[0]
    assert not (workdir / ".mamori").exists()


def test_audit_verify_on_an_empty_database_file_is_not_intact(workdir, monkeypatch):
    # An empty SQLite file (a botched restore) has no audit table: nothing to verify.
    (workdir / "data").mkdir()
    (workdir / "data" / "mamori.db").write_bytes(b"")
    monkeypatch.setenv("MAMORI_DATA_DIR", str(workdir / "data"))
    result = runner.invoke(app, ["audit", "verify"])
    assert result.exit_code == EXIT_NOTHING_TO_CHECK, result.output
    assert "no audit table" in result.stderr


def test_audit_verify_help_lists_the_no_store_exit_code():
    result = runner.invoke(app, ["audit", "verify", "--help"], terminal_width=200)
    assert f"{EXIT_NOTHING_TO_CHECK} = no store" in " ".join(result.stdout.split())


def test_scanning_an_empty_directory_is_not_safe(workdir):
    (workdir / "models").mkdir()
    result = runner.invoke(app, ["scan", "models", "--format", "json"])
    assert result.exit_code == EXIT_NOTHING_TO_CHECK, result.output
    report = json.loads(result.stdout)["reports"][0]
    assert report["verdict"] == "unsafe"
    assert [f["rule_id"] for f in report["findings"]] == ["MAM-GEN-009"]


def test_a_directory_of_only_subdirectories_is_empty_too(workdir):
    (workdir / "models" / "a" / "b").mkdir(parents=True)
    assert runner.invoke(app, ["scan", "models"]).exit_code == EXIT_NOTHING_TO_CHECK


def test_an_unsafe_path_beside_an_empty_one_exits_unsafe(workdir):
    (workdir / "empty").mkdir()
    (workdir / "evil.pkl").write_bytes(pickle.dumps(_PosixSystem("true"), protocol=2))
    assert runner.invoke(app, ["scan", "empty", "evil.pkl"]).exit_code == EXIT_UNSAFE


def test_a_safe_path_beside_an_empty_one_is_not_safe(workdir):
    (workdir / "empty").mkdir()
    (workdir / "ok.pkl").write_bytes(pickle.dumps({"w": [1.0]}, protocol=2))
    assert runner.invoke(app, ["scan", "ok.pkl"]).exit_code == EXIT_SAFE
    assert runner.invoke(app, ["scan", "empty", "ok.pkl"]).exit_code == EXIT_NOTHING_TO_CHECK


def _write_policy(workdir, text):
    path = workdir / "policy.toml"
    path.write_text(text)
    return path


def test_the_posix_system_payload_really_runs_when_loaded(workdir):
    # The attack the allow entry would bless: the real unpickler runs the command.
    marker = workdir / "marker"
    evil = workdir / "evil.pkl"
    evil.write_bytes(pickle.dumps(_PosixSystem(f"touch {marker}"), protocol=2))
    loader = f"import pickle; pickle.loads(open({str(evil)!r}, 'rb').read())"
    subprocess.run([sys.executable, "-c", loader], check=True, timeout=60)
    assert marker.exists()


def test_allowing_a_denylisted_global_is_refused(workdir):
    (workdir / "evil.pkl").write_bytes(pickle.dumps(_PosixSystem("true"), protocol=2))
    policy = _write_policy(workdir, '[globals]\nallow = ["posix.system"]\n')
    result = runner.invoke(app, ["scan", "evil.pkl", "--policy", str(policy)])
    assert result.exit_code == EXIT_ERROR, result.output
    line = result.stderr.strip()
    assert "globals.allow[0]" in line
    assert "built-in denylist" in line
    assert "override_denylist" in line


def test_an_override_needs_a_reason(workdir):
    policy = _write_policy(
        workdir, '[[globals.override_denylist]]\nname = "posix.system"\nreason = ""\n'
    )
    (workdir / "ok.pkl").write_bytes(pickle.dumps({}, protocol=2))
    result = runner.invoke(app, ["scan", "ok.pkl", "--policy", str(policy)])
    assert result.exit_code == EXIT_ERROR
    assert "override_denylist[0].reason" in result.stderr


def test_an_override_of_a_name_the_denylist_does_not_cover_is_refused(workdir):
    policy = _write_policy(
        workdir, '[[globals.override_denylist]]\nname = "mylib.layers.Dense"\nreason = "x"\n'
    )
    (workdir / "ok.pkl").write_bytes(pickle.dumps({}, protocol=2))
    result = runner.invoke(app, ["scan", "ok.pkl", "--policy", str(policy)])
    assert result.exit_code == EXIT_ERROR
    assert "not on the built-in denylist" in result.stderr


_OVERRIDE = '[[globals.override_denylist]]\nname = "posix.system"\nreason = "SEC-42 lab rig"\n'


@pytest.mark.parametrize("fmt", ["text", "json", "sarif"])
def test_an_audited_override_is_printed_in_every_report_format(workdir, fmt):
    (workdir / "evil.pkl").write_bytes(pickle.dumps(_PosixSystem("true"), protocol=2))
    policy = _write_policy(workdir, _OVERRIDE)
    result = runner.invoke(app, ["scan", "evil.pkl", "--policy", str(policy), "-f", fmt])
    # The override is explicit and reasoned, so the verdict follows it ...
    assert result.exit_code == EXIT_SAFE, result.output
    expected = f"{OVERRIDE_NOTE_PREFIX}posix.system is trusted by the scan policy: SEC-42 lab rig"
    # ... and no report format can hide it.
    if fmt == "text":
        assert f"note: {expected}" in result.stdout
    elif fmt == "json":
        assert json.loads(result.stdout)["reports"][0]["notes"] == [expected]
    else:
        invocation = json.loads(result.stdout)["runs"][0]["invocations"][0]
        notes = invocation["toolConfigurationNotifications"]
        assert notes == [{"level": "warning", "message": {"text": expected}}]


def test_a_policy_without_overrides_adds_no_notes(workdir):
    (workdir / "ok.pkl").write_bytes(pickle.dumps({}, protocol=2))
    policy = _write_policy(workdir, '[globals]\nallow = ["mylib.layers.Dense"]\n')
    result = runner.invoke(app, ["scan", "ok.pkl", "--policy", str(policy), "-f", "sarif"])
    assert result.exit_code == EXIT_SAFE
    assert "toolConfigurationNotifications" not in result.stdout
