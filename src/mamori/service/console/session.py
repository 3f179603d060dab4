"""The console's session cookie and CSRF tokens.

The cookie carries the credential the user signed in with (an API token or a JWT), sealed with
AES-GCM under a key that never leaves the server: the browser can neither read nor alter it.
Every request opens the cookie and verifies the credential again with the API's own code
(:meth:`~mamori.service.runtime.Runtime.authenticate`), so an expired JWT or a revoked API
token ends the session at once, and the console holds no identity state of its own.

The CSRF token is an HMAC of the session's random nonce (a synchronizer token): a page served
to this session carries it in every form, another site cannot read it, and it dies with the
session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mamori.errors import ConfigError, IdentityError

__all__ = ["COOKIE", "LOGIN_COOKIE", "ConsoleSessions", "SealedSession"]

COOKIE: Final = "__Host-mamori_session"
"""``__Host-``: the browser only accepts it Secure, for path ``/`` and this exact host."""
LOGIN_COOKIE: Final = "__Host-mamori_login"
"""The pre-session CSRF value of the login form (double submit)."""

_AAD: Final = b"mamori-console-session-v1"
_NONCE: Final = 12
_KEY_BYTES: Final = 32
_MAX_COOKIE: Final = 3800  # browsers drop cookies over 4096 bytes, name and attributes included
_KEY_MODE: Final = 0o600


@dataclass(frozen=True, slots=True)
class SealedSession:
    """What an opened cookie holds."""

    credential: str
    nonce: str
    expires_at: float


class ConsoleSessions:
    """Seal and open session cookies; derive and check CSRF tokens."""

    def __init__(self, key: bytes, *, max_age_seconds: int = 8 * 3600) -> None:
        """Use a 32-byte ``key``; sessions end after ``max_age_seconds`` at the latest."""
        if len(key) != _KEY_BYTES:
            msg = f"console session key must be {_KEY_BYTES} bytes, got {len(key)}"
            raise ConfigError(msg)
        self._aead = AESGCM(key)
        self._mac_key = hashlib.sha256(b"mamori-console-csrf\0" + key).digest()
        self.max_age_seconds = max_age_seconds

    @classmethod
    def from_dir(cls, directory: Path) -> ConsoleSessions:
        """Load ``console.key`` from ``directory``, creating it (mode 0600) on first use.

        A file rather than a per-process secret so that every worker of one deployment can
        open the others' cookies, and sessions survive a restart.
        """
        path = directory / "console.key"
        if not path.exists():
            directory.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _KEY_MODE)
            except FileExistsError:
                pass  # another worker created it first; read theirs
            else:
                with os.fdopen(fd, "wb") as out:
                    out.write(secrets.token_bytes(_KEY_BYTES))
        return cls(path.read_bytes())

    def seal(self, credential: str, *, now: float | None = None) -> tuple[str, SealedSession]:
        """A cookie value for ``credential`` and the session it opens to.

        Raises:
            IdentityError: the credential is too long to fit in a cookie.
        """
        opened = SealedSession(
            credential=credential,
            nonce=secrets.token_urlsafe(16),
            expires_at=(time.time() if now is None else now) + self.max_age_seconds,
        )
        payload = json.dumps(
            {"c": opened.credential, "n": opened.nonce, "e": opened.expires_at},
            separators=(",", ":"),
        ).encode()
        nonce = secrets.token_bytes(_NONCE)
        value = base64.urlsafe_b64encode(nonce + self._aead.encrypt(nonce, payload, _AAD))
        cookie = value.decode().rstrip("=")
        if len(cookie) > _MAX_COOKIE:
            raise IdentityError("the credential is too long for a console session")
        return cookie, opened

    def open(self, cookie: str, *, now: float | None = None) -> SealedSession:
        """The session in ``cookie``.

        Raises:
            IdentityError: the cookie was altered, made with another key, or has expired.
        """
        try:
            raw = base64.urlsafe_b64decode(cookie + "=" * (-len(cookie) % 4))
            payload = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], _AAD)
            data = json.loads(payload)
            opened = SealedSession(str(data["c"]), str(data["n"]), float(data["e"]))
        except (ValueError, KeyError, TypeError, InvalidTag) as exc:
            raise IdentityError("invalid console session") from exc
        if opened.expires_at <= (time.time() if now is None else now):
            raise IdentityError("the console session has expired; sign in again")
        return opened

    def csrf_token(self, nonce: str) -> str:
        """The CSRF token of the session (or login form) with ``nonce``."""
        return hmac.new(self._mac_key, nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, nonce: str, token: str) -> bool:
        """True when ``token`` is the CSRF token of ``nonce`` (constant-time comparison)."""
        return hmac.compare_digest(self.csrf_token(nonce), token)
