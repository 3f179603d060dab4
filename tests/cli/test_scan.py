from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mamori.cli import app
from mamori.cli.exitcodes import EXIT_ERROR, EXIT_SAFE, EXIT_UNSAFE
from mamori.scan.rules import RULES

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def garbage_model(workdir):
    # Named like a model but matching no format: MAM-GEN-004, medium, so UNSAFE by default.
    path = workdir / "model.pt"
    path.write_bytes(b"K\x01\xff definitely not a model")  # K: pickle.load reads on
    return path


@pytest.fixture
def plain_file(workdir):
    path = workdir / "README.txt"
    path.write_text("just notes\n")
    return path


def _scan(*args):
    return runner.invoke(app, ["scan", *map(str, args)])


def _one_line_error(result, fragment):
    assert result.exit_code == EXIT_ERROR, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mamori: error: ")
    assert fragment in lines[0]


def test_exit_codes_are_distinct_constants():
    assert len({EXIT_SAFE, EXIT_UNSAFE, EXIT_ERROR}) == 3
    assert (EXIT_SAFE, EXIT_UNSAFE, EXIT_ERROR) == (0, 1, 2)


def test_help_documents_the_exit_codes():
    result = runner.invoke(app, ["scan", "--help"], terminal_width=200)
    assert result.exit_code == 0
    text = " ".join(result.output.split())
    assert "0 = every path SAFE" in text
    assert "1 = a finding at or above --fail-on (UNSAFE)" in text
    assert "2 = error" in text


def test_clean_file_exits_safe(plain_file):
    result = _scan(plain_file)
    assert result.exit_code == EXIT_SAFE, result.output
    assert result.stdout.startswith("SAFE  ")


def test_unsafe_file_exits_unsafe(garbage_model):
    result = _scan(garbage_model)
    assert result.exit_code == EXIT_UNSAFE, result.output
    assert result.stdout.startswith("UNSAFE  ")


def test_fail_on_raises_the_threshold(garbage_model):
    result = _scan(garbage_model, "--fail-on", "high", "--format", "json")
    assert result.exit_code == EXIT_SAFE, result.output
    report = json.loads(result.stdout)["reports"][0]
    # The report and the exit code agree: --fail-on replaces the policy threshold.
    assert report["threshold"] == "high"
    assert report["verdict"] == "safe"


def test_fail_on_is_case_insensitive(garbage_model):
    assert _scan(garbage_model, "--fail-on", "MEDIUM").exit_code == EXIT_UNSAFE


def test_policy_threshold_is_the_default_for_fail_on(garbage_model, workdir):
    policy = workdir / "policy.toml"
    policy.write_text('threshold = "critical"\n')
    assert _scan(garbage_model, "--policy", policy).exit_code == EXIT_SAFE
    assert _scan(garbage_model, "--policy", policy, "--fail-on", "low").exit_code == EXIT_UNSAFE


def test_policy_suppression_applies(garbage_model, workdir):
    rule_id = json.loads(_scan(garbage_model, "-f", "json").stdout)["reports"][0]["findings"][0][
        "rule_id"
    ]
    policy = workdir / "policy.toml"
    policy.write_text(f'[[suppress]]\nrule = "{rule_id}"\npath = "*"\nreason = "fixture"\n')
    result = _scan(garbage_model, "--policy", policy, "-f", "json")
    assert result.exit_code == EXIT_SAFE
    assert json.loads(result.stdout)["reports"][0]["suppressed"][0]["reason"] == "fixture"


def test_json_format_writes_the_versioned_document(plain_file, garbage_model):
    result = _scan(plain_file, garbage_model, "--format", "json")
    assert result.exit_code == EXIT_UNSAFE
    doc = json.loads(result.stdout)
    assert doc["schema_version"] == "1.0"
    assert [r["verdict"] for r in doc["reports"]] == ["safe", "unsafe"]
    assert doc["summary"]["paths"] == 2


def test_sarif_format_uses_paths_relative_to_the_working_directory(garbage_model):
    result = _scan(garbage_model.resolve(), "--format", "sarif")
    log = json.loads(result.stdout)
    assert log["version"] == "2.1.0"
    assert log["runs"][0]["artifacts"][0]["location"]["uri"] == "model.pt"
    assert log["runs"][0]["results"]


def test_md5_flag_adds_md5_digests(plain_file):
    doc = json.loads(_scan(plain_file, "--md5", "-f", "json").stdout)
    assert len(doc["reports"][0]["md5"]) == 32


def test_directory_is_scanned_as_one_artifact(workdir):
    tree = workdir / "ckpt"
    tree.mkdir()
    (tree / "a.txt").write_text("a")
    (tree / "b.txt").write_text("b")
    doc = json.loads(_scan(tree, "-f", "json").stdout)
    (report,) = doc["reports"]
    assert report["format"] == "directory"
    assert [m["path"] for m in report["members"]] == [["a.txt"], ["b.txt"]]


def test_output_file_receives_the_report_and_stdout_stays_empty(garbage_model, workdir):
    out = workdir / "results.sarif"
    result = _scan(garbage_model, "-f", "sarif", "-o", out)
    assert result.exit_code == EXIT_UNSAFE
    assert result.stdout == ""
    assert json.loads(out.read_text())["version"] == "2.1.0"
    assert sorted(p.name for p in workdir.iterdir()) == ["model.pt", "results.sarif"]


def test_output_file_honours_the_umask(plain_file, workdir):
    out = workdir / "r.json"
    _scan(plain_file, "-f", "json", "-o", out)
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_missing_path_exits_error_with_one_line(plain_file, workdir):
    result = _scan(plain_file, workdir / "absent.pt")
    _one_line_error(result, "cannot scan")
    assert "absent.pt" in result.stderr
    assert "No such file or directory" in result.stderr


def test_failed_run_leaves_no_output_file(workdir):
    out = workdir / "r.json"
    result = _scan(workdir / "absent.pt", "-o", out)
    assert result.exit_code == EXIT_ERROR
    assert not out.exists()


def test_failed_write_keeps_the_old_report_and_no_temp_file(plain_file, workdir, monkeypatch):
    out = workdir / "r.json"
    out.write_text("previous report")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    result = _scan(plain_file, "-f", "json", "-o", out)
    _one_line_error(result, "No space left on device")
    assert out.read_text() == "previous report"
    assert sorted(p.name for p in workdir.iterdir()) == ["README.txt", "r.json"]


def test_output_in_a_missing_directory_is_an_error(plain_file, workdir):
    _one_line_error(_scan(plain_file, "-o", workdir / "nope" / "r.json"), "does not exist")


def test_output_that_is_a_directory_is_an_error(plain_file, workdir):
    _one_line_error(_scan(plain_file, "-o", workdir), "is a directory")


def test_unknown_format_is_an_error(plain_file):
    _one_line_error(_scan(plain_file, "--format", "xml"), "--format: unknown format 'xml'")


def test_unknown_severity_is_an_error(plain_file):
    _one_line_error(_scan(plain_file, "--fail-on", "severe"), "--fail-on: unknown severity")


def test_bad_policy_file_is_an_error_naming_the_key(plain_file, workdir):
    policy = workdir / "policy.toml"
    policy.write_text('[[suppress]]\nrule = "MAM-GEN-001"\npath = "*"\n')
    _one_line_error(_scan(plain_file, "--policy", policy), "suppress[0].reason: field required")


def test_missing_policy_file_is_an_error(plain_file, workdir):
    _one_line_error(_scan(plain_file, "--policy", workdir / "no.toml"), "no.toml")


def test_unknown_option_is_a_usage_error_with_exit_2(plain_file):
    assert _scan(plain_file, "--bogus").exit_code == EXIT_ERROR


def test_no_paths_is_a_usage_error_with_exit_2():
    assert runner.invoke(app, ["scan"]).exit_code == EXIT_ERROR


def test_a_crash_exits_error_never_unsafe_or_safe(plain_file, monkeypatch):
    def crash(path, policy, **_):
        raise RuntimeError("bug in a handler")

    monkeypatch.setattr("mamori.cli.scan.scan_path", crash)
    result = _scan(plain_file)
    assert result.exit_code == EXIT_ERROR
    assert "mamori: error: internal error: RuntimeError: bug in a handler" in result.stderr


def test_interrupt_exits_error_and_writes_nothing(plain_file, workdir, monkeypatch):
    def interrupted(path, policy, **_):
        raise KeyboardInterrupt

    monkeypatch.setattr("mamori.cli.scan.scan_path", interrupted)
    result = _scan(plain_file, "-o", workdir / "r.json")
    _one_line_error(result, "interrupted")
    assert not (workdir / "r.json").exists()


def test_hostile_path_in_an_error_is_escaped(workdir):
    result = _scan(workdir / "a\x1b[2Jb.pt")
    assert result.exit_code == EXIT_ERROR
    assert "\x1b" not in result.stderr


def test_rules_lists_every_rule(workdir):
    result = runner.invoke(app, ["rules"])
    assert result.exit_code == 0
    for rule_id in RULES:
        assert rule_id in result.stdout


def test_rules_json_has_severity_title_cwe_and_atlas():
    result = runner.invoke(app, ["rules", "--format", "json"])
    doc = json.loads(result.stdout)
    by_id = {r["id"]: r for r in doc["rules"]}
    assert set(by_id) == set(RULES)
    assert by_id["MAM-GEN-006"]["severity"] == "high"
    assert by_id["MAM-GEN-006"]["cwe"] == ["CWE-59"]
    assert by_id["MAM-GEN-006"]["atlas"] == ["AML.T0010.003", "AML.T0011.000"]


def test_rules_unknown_format_is_an_error():
    _one_line_error(runner.invoke(app, ["rules", "-f", "yaml"]), "--format")


def _entry_point() -> str:
    found = Path(sys.executable).parent / "mamori"
    if found.exists():
        return str(found)
    which = shutil.which("mamori")
    assert which is not None, "the mamori console script is not installed"
    return which


def test_installed_entry_point_scans_and_maps_exit_codes(garbage_model, plain_file):
    env = {**os.environ, "NO_COLOR": "1"}
    unsafe = subprocess.run(
        [_entry_point(), "scan", str(garbage_model), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    assert unsafe.returncode == EXIT_UNSAFE, unsafe.stderr
    assert json.loads(unsafe.stdout)["reports"][0]["verdict"] == "unsafe"
    missing = subprocess.run(
        [_entry_point(), "scan", str(plain_file.parent / "absent")],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=120,
    )
    assert missing.returncode == EXIT_ERROR
    assert missing.stderr.startswith("mamori: error: cannot scan")


def test_readme_documents_every_exit_code():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    from mamori.cli import exitcodes

    for name in exitcodes.__all__:
        if name.startswith("EXIT_") and name != "EXIT_CODE_HELP":
            code = getattr(exitcodes, name)
            assert f"| {code} | `{name}` |" in readme, name


def test_unencodable_names_do_not_crash_a_latin1_stdout(workdir):
    path = workdir / "模型.txt"
    path.write_text("notes")
    result = subprocess.run(
        [_entry_point(), "scan", str(path)],
        capture_output=True,
        check=False,
        env={**os.environ, "PYTHONIOENCODING": "latin-1"},
        timeout=120,
    )
    assert result.returncode == EXIT_SAFE, result.stderr
    assert b"\\u6a21\\u578b.txt" in result.stdout


class _Payload:
    """Unpickling this would run ``os.system("true")``; the test only scans the bytes."""

    def __reduce__(self):
        return (os.system, ("true",))


def test_reduce_payload_pickle_exits_unsafe_with_a_pickle_finding(workdir):
    import pickle

    path = workdir / "payload.pkl"
    path.write_bytes(pickle.dumps(_Payload(), protocol=2))
    result = _scan(path)
    assert result.exit_code == EXIT_UNSAFE
    assert "MAM-PKL-" in result.stdout
    assert "\x1b" not in result.stdout  # not a terminal: no colour codes
