"""``mamori token``, ``audit``, ``policy test`` and ``approve|reject|override``."""

from __future__ import annotations

import json
import pickle

import pytest
from sqlalchemy import delete, update
from typer.testing import CliRunner

from mamori.audit import AuditRecord, verify_chain
from mamori.cli import app
from mamori.cli.exitcodes import EXIT_CHECK_FAILED, EXIT_DENIED, EXIT_ERROR, EXIT_SAFE
from mamori.config import load_settings
from mamori.lifecycle import has_mfa
from mamori.service.runtime import build_runtime
from mamori.store.models import AuditRow


class _Reduce:
    def __reduce__(self):
        import os

        return (os.system, ("true",))


BENIGN = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)
MALICIOUS = pickle.dumps(_Reduce(), protocol=4)


@pytest.fixture
def env(tmp_path, monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("MAMORI_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("MAMORI_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.chdir(tmp_path)
    return load_settings()


@pytest.fixture
def runtime(env):
    rt = build_runtime(env)
    yield rt
    rt.close()


def _run(*args: str):
    return CliRunner().invoke(app, list(args))


def _mint(*args: str) -> str:
    result = _run("token", "mint", *args)
    assert result.exit_code == EXIT_SAFE, result.output
    return result.stdout.strip()


def _scanned(runtime, tmp_path, data: bytes, by: str = "ivan") -> str:
    path = tmp_path / f"m-{len(data)}.pkl"
    path.write_bytes(data)
    importer = runtime.authenticate(_mint("--role", "importer", "--subject", by))
    sha = runtime.lifecycle.import_file(importer, path).sha256
    runtime.lifecycle.run_scan(sha)
    return sha


def test_token_mint_prints_a_jwt_the_api_accepts(runtime):
    principal = runtime.authenticate(_mint("--role", "approver", "--role", "deployer"))
    assert principal.roles == {"approver", "deployer"}
    assert principal.subject == "dev-approver"
    assert has_mfa(principal)


def test_token_mint_without_mfa(runtime):
    assert not has_mfa(runtime.authenticate(_mint("--role", "viewer", "--no-mfa")))


def test_token_mint_refuses_when_the_dev_issuer_is_off(env, monkeypatch):
    monkeypatch.setenv("MAMORI_DEV_ISSUER", "false")
    result = _run("token", "mint", "--role", "viewer")
    assert result.exit_code == EXIT_ERROR
    assert "development issuer is off" in result.stderr


def test_token_create_list_and_revoke(runtime):
    made = _run("token", "create", "--name", "ci", "--scope", "gate", "--role", "deployer")
    assert made.exit_code == EXIT_SAFE, made.output
    secret = made.stdout.strip()
    assert secret.startswith("mamori_")
    assert runtime.authenticate(secret).subject == "ci:ci"
    listing = _run("token", "list")
    assert "ci:ci" in listing.stdout
    assert secret not in listing.stdout
    assert _run("token", "revoke", "1").exit_code == EXIT_SAFE
    from mamori.errors import IdentityError

    with pytest.raises(IdentityError):
        runtime.authenticate(secret)


def test_token_create_refuses_an_unknown_scope(env):
    result = _run("token", "create", "--name", "ci", "--scope", "root")
    assert result.exit_code == EXIT_ERROR
    assert "--scope" in result.stderr


def test_audit_verify_passes_on_an_intact_chain(runtime, tmp_path):
    _scanned(runtime, tmp_path, BENIGN)
    result = _run("audit", "verify")
    assert result.exit_code == EXIT_SAFE, result.output
    assert "intact" in result.stdout


def test_audit_verify_names_the_first_altered_record(runtime, tmp_path):
    _scanned(runtime, tmp_path, BENIGN)
    with runtime.store.write() as session:
        session.execute(update(AuditRow).where(AuditRow.seq == 2).values(reason="nothing to see"))
    result = _run("audit", "verify")
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "audit record 2 was altered" in result.stderr


def test_audit_verify_catches_a_rewritten_record_by_the_next_link(runtime, tmp_path):
    _scanned(runtime, tmp_path, BENIGN)
    from mamori.audit import record_hash
    from mamori.store.auditlog import iter_audit

    first = next(iter_audit(runtime.store))
    forged = AuditRecord(**{**first.to_json(), "policy_ids": (), "decision": "deny"})
    with runtime.store.write() as session:
        session.execute(
            update(AuditRow)
            .where(AuditRow.seq == 1)
            .values(decision="deny", policy_ids=[], hash=record_hash(forged))
        )
    result = _run("audit", "verify")
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "broken at record 2" in result.stderr


def test_audit_verify_catches_a_deleted_record(runtime, tmp_path):
    _scanned(runtime, tmp_path, BENIGN)
    with runtime.store.write() as session:
        session.execute(delete(AuditRow).where(AuditRow.seq == 2))
    result = _run("audit", "verify")
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "record 2 is missing" in result.stderr


def _rewrite_chain(runtime, first_decision: str) -> None:
    """What someone with write access to the database can do: rewrite every hash and link."""
    from mamori.audit import GENESIS_HASH, record_hash
    from mamori.store.auditlog import iter_audit

    prev = GENESIS_HASH
    with runtime.store.write() as session:
        for record in list(iter_audit(runtime.store)):
            changes = {"prev_hash": prev}
            if record.seq == 1:
                changes["decision"] = first_decision
            forged = AuditRecord(**{**record.to_json(), **changes, "policy_ids": record.policy_ids})
            prev = record_hash(forged)
            session.execute(
                update(AuditRow).where(AuditRow.seq == record.seq).values(**changes, hash=prev)
            )


def test_audit_anchors_catch_a_chain_rewritten_wholesale(runtime, tmp_path):
    _scanned(runtime, tmp_path, BENIGN)
    head = _run("audit", "head")
    assert head.exit_code == EXIT_SAFE, head.output
    assert json.loads(head.stdout)["seq"] >= 2
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text(head.stdout)
    assert _run("audit", "verify", "--anchors", str(anchors)).exit_code == EXIT_SAFE
    _rewrite_chain(runtime, "deny")
    assert _run("audit", "verify").exit_code == EXIT_SAFE  # the chain alone cannot tell
    result = _run("audit", "verify", "--anchors", str(anchors))
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "rewritten" in result.stderr


def test_audit_anchors_catch_a_truncated_chain(runtime, tmp_path):
    _scanned(runtime, tmp_path, BENIGN)
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text(_run("audit", "head").stdout)
    last = json.loads(anchors.read_text())["seq"]
    with runtime.store.write() as session:
        session.execute(delete(AuditRow).where(AuditRow.seq == last))
    assert _run("audit", "verify").exit_code == EXIT_SAFE  # a shorter chain is still a chain
    result = _run("audit", "verify", "--anchors", str(anchors))
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "truncated" in result.stderr


def test_a_malformed_anchors_file_names_its_line(env, tmp_path):
    anchors = tmp_path / "anchors.jsonl"
    anchors.write_text('{"seq": 1, "hash": "ab"}\nnot json\n')
    result = _run("audit", "verify", "--anchors", str(anchors))
    assert result.exit_code == EXIT_ERROR
    assert "anchors.jsonl:2" in result.stderr


def test_audit_export_writes_a_verifiable_json_lines_file(runtime, tmp_path):
    _scanned(runtime, tmp_path, BENIGN)
    out = tmp_path / "audit.jsonl"
    assert _run("audit", "export", "--output", str(out)).exit_code == EXIT_SAFE
    records = [AuditRecord.from_json(json.loads(line)) for line in out.read_text().splitlines()]
    assert verify_chain(records) == len(records) >= 3


_CASES = """
[[case]]
name = "approver with MFA approves a SAFE artifact someone else imported"
principal = { subject = "alice", roles = ["approver"], mfa = true }
action = "approve"
resource = { imported_by = "bob", verdict = "safe", state = "safe" }
expect = "allow"

[[case]]
name = "four eyes"
principal = { subject = "bob", roles = ["approver"], mfa = true }
action = "approve"
resource = { imported_by = "bob", verdict = "safe" }
expect = "deny"

[[case]]
name = "override needs a reason"
principal = { subject = "root", roles = ["admin"], mfa = true }
action = "override"
resource = { imported_by = "bob", verdict = "unsafe" }
expect = "deny"
"""


def test_policy_test_passes_when_every_expectation_holds(env, tmp_path):
    cases = tmp_path / "cases.toml"
    cases.write_text(_CASES)
    result = _run("policy", "test", str(cases))
    assert result.exit_code == EXIT_SAFE, result.output
    assert "3/3 cases as expected" in result.stdout
    assert "four-eyes" in result.stdout


def test_policy_test_fails_on_a_mismatch_and_names_it(env, tmp_path):
    cases = tmp_path / "cases.json"
    cases.write_text(
        json.dumps(
            {
                "case": [
                    {
                        "name": "viewer approves",
                        "principal": {"subject": "v", "roles": ["viewer"], "mfa": True},
                        "action": "approve",
                        "resource": {"imported_by": "x"},
                        "expect": "allow",
                    }
                ]
            }
        )
    )
    result = _run("policy", "test", str(cases))
    assert result.exit_code == EXIT_CHECK_FAILED
    assert "FAIL case 1 (viewer approves)" in result.stdout


@pytest.mark.parametrize(
    "text", ["not toml [", "case = 3", '[[case]]\nname = "x"\naction = "fly"\nexpect = "allow"']
)
def test_policy_test_on_a_broken_file_is_an_error(env, tmp_path, text):
    cases = tmp_path / "cases.toml"
    cases.write_text(text)
    result = _run("policy", "test", str(cases))
    assert result.exit_code == EXIT_ERROR
    assert "cases.toml" in result.stderr or "case 1" in result.stderr


def test_approve_through_the_cli_with_another_persons_token(runtime, tmp_path):
    sha = _scanned(runtime, tmp_path, BENIGN)
    result = _run("approve", sha, "--token", _mint("--role", "approver", "--subject", "alice"))
    assert result.exit_code == EXIT_SAFE, result.output
    assert "approved" in result.stdout
    assert runtime.lifecycle.gate(sha).allowed is True
    assert runtime.lifecycle.get(sha).state.value == "approved"


def test_approving_your_own_import_is_denied_naming_the_policy(runtime, tmp_path, monkeypatch):
    sha = _scanned(runtime, tmp_path, BENIGN, by="ivan")
    monkeypatch.setenv("MAMORI_TOKEN", _mint("--role", "approver", "--subject", "ivan"))
    result = _run("approve", sha)
    assert result.exit_code == EXIT_DENIED
    assert "four-eyes" in result.stderr


def test_a_forged_token_is_denied_like_the_api_denies_it(runtime, tmp_path):
    sha = _scanned(runtime, tmp_path, BENIGN)
    token = _mint("--role", "approver")
    head, body, _sig = token.split(".")
    result = _run("approve", sha, "--token", f"{head}.{body}.")
    assert result.exit_code == EXIT_DENIED
    assert "denied" in result.stderr


def test_deciding_without_a_token_is_denied(runtime, tmp_path):
    result = _run("reject", "0" * 64)
    assert result.exit_code == EXIT_DENIED
    assert "MAMORI_TOKEN" in result.stderr


def test_an_unknown_digest_is_an_error(runtime):
    result = _run("reject", "0" * 64, "--token", _mint("--role", "approver"))
    assert result.exit_code == EXIT_ERROR
    assert "no artifact" in result.stderr


def test_override_needs_a_reason_then_succeeds_with_one(runtime, tmp_path):
    sha = _scanned(runtime, tmp_path, MALICIOUS)
    admin = _mint("--role", "admin", "--subject", "root")
    refused = _run("override", sha, "--token", admin)
    assert refused.exit_code == EXIT_DENIED
    assert "override-needs-admin-and-reason" in refused.stderr
    done = _run("override", sha, "--token", admin, "--reason", "reviewed: TICKET-7")
    assert done.exit_code == EXIT_SAFE, done.output
    assert "reviewed: TICKET-7" in done.stdout
