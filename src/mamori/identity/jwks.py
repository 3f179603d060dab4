"""Verification keys from the operator's JWKS (file or URL), refreshed off the request path.

A token chooses which key verifies it through its ``kid`` header, so the ``kid`` is attacker
input: a lookup of an unknown ``kid`` must not cost a JWKS fetch per request, and must never
make a request with a *known* ``kid`` wait. The rules:

1. A known ``kid`` is answered from an immutable snapshot of the keys, without a lock.
2. An unknown ``kid`` is refused at once. It asks for a background refresh, granted at most
   once per ``refresh_interval_seconds`` (and never while one is in flight); the ``kid`` goes
   into a bounded negative cache, so repeating it does not even ask until the interval is over.
   An IdP that rotates keys publishes the new key before signing with it (OIDC Core 10.1), so
   a new ``kid`` is normally known before its first token arrives; if not, that first token is
   refused and the next one, after the refresh, verifies.
3. Known keys older than ``ttl_seconds`` are still used while a background refresh replaces
   them (key rotation, removal of a compromised key).
4. A failed refresh keeps the previous keys, for at most ``max_stale_seconds`` after the last
   successful load: past that, every token is refused until a refresh succeeds. Otherwise an
   attacker holding a key the IdP has since withdrawn (a leaked key, rotated out) would only
   need to keep mamori from reaching the JWKS endpoint to keep it valid for ever.
   Only the very first load happens on the request
   path (there is nothing to verify with before it); it is single-flighted and retried at most
   once per :data:`_FIRST_LOAD_RETRY` seconds when it fails.

The fetch itself never runs under a lock that a request waits on.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final

import httpx
import jwt
import structlog
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mamori.errors import IdentityError

__all__ = ["JwksSource"]

_log = structlog.get_logger("mamori.identity")

_MAX_JWKS_BYTES: Final = 1 << 20
_NEGATIVE_CACHE: Final = 4096
_FIRST_LOAD_RETRY: Final = 2.0
_FETCH_TIMEOUT: Final = 5.0

Keys = Mapping[str, tuple[str, Any]]


class JwksSource:
    """Keys from a JWKS file or URL that the operator configured (see the module docstring).

    A fetch or parse failure of the first load raises :class:`IdentityError`; the verifier
    then denies. :attr:`fetches` counts loads attempted (for metrics and tests).
    """

    def __init__(
        self,
        *,
        path: Path | None = None,
        url: str | None = None,
        ttl_seconds: float = 300.0,
        refresh_interval_seconds: float = 60.0,
        max_stale_seconds: float = 24 * 3600.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Configure the source; exactly one of ``path`` or ``url`` must be given."""
        if (path is None) == (url is None):
            raise IdentityError("configure exactly one of a JWKS path or a JWKS URL")
        if refresh_interval_seconds <= 0 or ttl_seconds <= 0:
            raise IdentityError("JWKS refresh interval and TTL must be positive")
        if max_stale_seconds < ttl_seconds:
            raise IdentityError("JWKS max_stale_seconds must be at least the TTL")
        self._path = path
        self._url = url
        self._ttl = ttl_seconds
        self._interval = refresh_interval_seconds
        self._max_stale = max_stale_seconds
        self._client = client
        self._clock = clock
        self._keys: Keys = MappingProxyType({})
        self._loaded_at = float("-inf")
        # Guards the scheduling fields below; held for a few comparisons, never during I/O.
        self._state = threading.Lock()
        self._first = threading.Lock()
        self._refreshing = False
        self._last_attempt = float("-inf")
        self._first_failed_at = float("-inf")
        self._negative: OrderedDict[str, float] = OrderedDict()
        self.fetches = 0

    def key_for(self, kid: str) -> tuple[str, Any]:
        """Return ``(kty, public_key)`` for ``kid``, or raise :class:`IdentityError`."""
        keys = self._keys or self._first_load()
        found = keys.get(kid)
        now = self._clock()
        if found is not None:
            age = now - self._loaded_at
            if age > self._ttl:
                self._schedule(now)
            if age > self._max_stale:
                msg = "the configured JWKS could not be refreshed for too long; refusing its keys"
                raise IdentityError(msg)
            return found
        if self._remember_unknown(kid, now):
            self._schedule(now)
        raise IdentityError("token key id is not in the configured JWKS")

    def preload(self) -> None:
        """Start the first load in the background (at service start-up).

        The first requests then find the keys loaded instead of waiting for them. A failure
        is logged; the first request retries as usual.
        """

        def _load() -> None:
            try:
                self._first_load()
            except IdentityError as exc:
                _log.warning("jwks_preload_failed", error=exc.diagnostics())

        threading.Thread(target=_load, name="mamori-jwks-preload", daemon=True).start()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Block until no refresh is in flight (tests, orderly shutdown); False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._state:
                if not self._refreshing:
                    return True
            time.sleep(0.01)
        return False

    def _remember_unknown(self, kid: str, now: float) -> bool:
        """Negative-cache ``kid``; True when it was not cached (so a refresh may help)."""
        with self._state:
            until = self._negative.get(kid)
            if until is not None and until > now:
                return False
            self._negative[kid] = now + self._interval
            self._negative.move_to_end(kid)
            while len(self._negative) > _NEGATIVE_CACHE:
                self._negative.popitem(last=False)
            return True

    def _schedule(self, now: float) -> None:
        with self._state:
            if self._refreshing or now - self._last_attempt < self._interval:
                return
            self._refreshing = True
            self._last_attempt = now
        threading.Thread(target=self._refresh, name="mamori-jwks-refresh", daemon=True).start()

    def _refresh(self) -> None:
        try:
            keys = self._load()
        except IdentityError as exc:
            # The previous keys stay in use; the next unknown kid or TTL expiry retries.
            _log.warning("jwks_refresh_failed", error=exc.diagnostics())
        else:
            self._install(keys)
        finally:
            with self._state:
                self._refreshing = False

    def _install(self, keys: Keys) -> None:
        self._keys = keys
        self._loaded_at = self._clock()
        with self._state:
            for kid in keys:
                self._negative.pop(kid, None)

    def _first_load(self) -> Keys:
        with self._first:
            if self._keys:
                return self._keys
            now = self._clock()
            if now - self._first_failed_at < _FIRST_LOAD_RETRY:
                raise IdentityError("the configured JWKS could not be loaded; retrying shortly")
            with self._state:
                self._last_attempt = now
            try:
                keys = self._load()
            except IdentityError:
                self._first_failed_at = self._clock()
                raise
            self._install(keys)
            return keys

    def _load(self) -> Keys:
        with self._state:
            self.fetches += 1
        raw = self._read()
        try:
            document = json.loads(raw)
            keys = document["keys"]
            if not isinstance(keys, list):
                raise TypeError("keys is not a list")  # noqa: TRY301 -- joins the handler below
            result: dict[str, tuple[str, Any]] = {}
            for jwk in keys:
                kty = jwk["kty"]
                kid = jwk["kid"]
                text = json.dumps(jwk)
                if kty == "RSA":
                    result[kid] = ("RSA", RSAAlgorithm.from_jwk(text))
                elif kty == "EC":
                    result[kid] = ("EC", ECAlgorithm.from_jwk(text))
                # Other key types (oct, OKP) are skipped: they can never match our allowlist.
        except (ValueError, KeyError, TypeError, jwt.InvalidKeyError) as exc:
            raise IdentityError("the configured JWKS is malformed") from exc
        if not result:
            raise IdentityError("the configured JWKS holds no usable keys")
        return MappingProxyType(result)

    def _read(self) -> str:
        if self._path is not None:
            try:
                return self._path.read_text(encoding="utf-8")
            except OSError as exc:
                msg = f"cannot read JWKS file {self._path}"
                raise IdentityError(msg) from exc
        assert self._url is not None
        try:
            if self._client is not None:
                return self._fetch(self._client, self._url)
            with httpx.Client(timeout=_FETCH_TIMEOUT) as client:
                return self._fetch(client, self._url)
        except httpx.HTTPError as exc:
            raise IdentityError("cannot fetch the configured JWKS URL") from exc

    @staticmethod
    def _fetch(client: httpx.Client, url: str) -> str:
        body = bytearray()
        with client.stream("GET", url) as response:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > _MAX_JWKS_BYTES:
                    msg = f"the JWKS at {url} is larger than {_MAX_JWKS_BYTES} bytes"
                    raise IdentityError(msg)
        return body.decode("utf-8", "replace")
