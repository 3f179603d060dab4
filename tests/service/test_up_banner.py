"""``make up`` tells a new user where the console is and how to sign in."""

from __future__ import annotations

from pathlib import Path

from mamori.service import up


def test_the_banner_names_the_console_url_and_the_tokens_that_sign_in(capsys):
    up._banner("http://127.0.0.1:8000", "imp-token", "appr-token", Path("sample.pkl"), "ab" * 32)
    out = capsys.readouterr().out + capsys.readouterr().err
    assert "http://127.0.0.1:8000/console" in out
    assert "export APPROVER=appr-token" in out
