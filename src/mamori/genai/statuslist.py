"""An optional second revocation source: the IdP's OAuth Token Status List.

draft-ietf-oauth-status-list lets an issuer revoke or suspend a token it issued without
knowing the relying parties: the token carries ``"status": {"status_list": {"idx": N, "uri":
U}}``, and ``U`` serves a *Status List Token*, a JWT signed by the same issuer whose
``status_list`` claim holds ``bits`` per token, DEFLATE-compressed and base64url-encoded
(``lst``). Status ``0`` is VALID; anything else (INVALID, SUSPENDED, application values) is a
refusal here.

What mamori does on top of the draft, because a security engineer will ask:

* The URI comes from a signed token, but mamori fetches only URIs under the operator's
  ``allowed_prefixes`` (no server-side request forgery through a token the issuer was tricked
  into signing), with a timeout and a size cap.
* The list is verified with the operator's JWKS and algorithm allowlist, its ``sub`` must be
  the URI that was fetched, and ``exp`` is honoured.
* It is cached for ``ttl_seconds`` (or the list's own shorter ``ttl``); every use of a context
  reads the cached list, so a revocation at the IdP is seen within that time.
* Any failure (network, signature, a missing index, a malformed list) is a refusal.
"""

from __future__ import annotations

import base64
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx
import jwt

from mamori.errors import ConfigError, IdentityError
from mamori.identity import ASYMMETRIC_ALGORITHMS, JwksSource

__all__ = ["StatusListSource", "StatusReference", "status_reference"]

_MAX_LIST_BYTES: Final = 1 << 20
_MAX_TOKEN_BYTES: Final = 4 << 20
_BITS: Final = frozenset({1, 2, 4, 8})


@dataclass(frozen=True, slots=True)
class StatusReference:
    """Where a token's status lives: the list's URI and the token's index in it."""

    uri: str
    idx: int


def status_reference(claims: Mapping[str, Any]) -> StatusReference | None:
    """The token's ``status.status_list`` reference, ``None`` if it has none.

    Raises:
        IdentityError: the claim is present but malformed (the token is then refused).
    """
    status = claims.get("status")
    if status is None:
        return None
    ref = status.get("status_list") if isinstance(status, Mapping) else None
    if ref is None and isinstance(status, Mapping):
        return None  # another status mechanism this relying party does not use
    if not isinstance(ref, Mapping):
        raise IdentityError("the token's status claim is malformed")
    uri, idx = ref.get("uri"), ref.get("idx")
    if not isinstance(uri, str) or isinstance(idx, bool) or not isinstance(idx, int) or idx < 0:
        raise IdentityError("the token's status_list reference is malformed")
    return StatusReference(uri, idx)


@dataclass(frozen=True, slots=True)
class _List:
    bits: int
    data: bytes
    expires: float

    def status(self, idx: int) -> int:
        position = idx * self.bits
        byte = position // 8
        if byte >= len(self.data):
            raise IdentityError("the token's index is outside its status list")
        return (self.data[byte] >> (position % 8)) & ((1 << self.bits) - 1)


class StatusListSource:
    """Fetches, verifies and caches Status List Tokens from operator-approved URIs."""

    def __init__(
        self,
        *,
        issuer: str,
        jwks: JwksSource,
        allowed_prefixes: tuple[str, ...],
        algorithms: frozenset[str] = frozenset({"RS256", "ES256"}),
        ttl_seconds: float = 300.0,
        client: httpx.Client | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Trust lists signed by ``issuer``'s ``jwks`` and served under ``allowed_prefixes``."""
        if not allowed_prefixes or not all(p.endswith("/") for p in allowed_prefixes):
            raise ConfigError("status list URI prefixes must be given and end with '/'")
        if not algorithms or not algorithms <= ASYMMETRIC_ALGORITHMS:
            raise ConfigError("status list algorithms must be asymmetric ones")
        self._issuer = issuer
        self._jwks = jwks
        self._prefixes = allowed_prefixes
        self._algorithms = algorithms
        self._ttl = ttl_seconds
        self._client = client or httpx.Client(timeout=5.0, follow_redirects=False)
        self._clock = clock
        self._lock = threading.Lock()
        self._cache: dict[str, _List] = {}

    def status(self, ref: StatusReference) -> int:
        """The token's status value (``0`` is VALID). Raises :class:`IdentityError`."""
        if not ref.uri.startswith(self._prefixes):
            raise IdentityError("the token's status list URI is not an allowed one")
        now = self._clock()
        with self._lock:
            cached = self._cache.get(ref.uri)
            if cached is None or cached.expires <= now:
                cached = self._fetch(ref.uri, now)
                self._cache[ref.uri] = cached
        return cached.status(ref.idx)

    def _fetch(self, uri: str, now: float) -> _List:
        try:
            response = self._client.get(uri, headers={"Accept": "application/statuslist+jwt"})
            response.raise_for_status()
        except httpx.HTTPError as exc:
            raise IdentityError("cannot fetch the token's status list") from exc
        if len(response.content) > _MAX_TOKEN_BYTES:
            raise IdentityError("the status list token is too large")
        return self._parse(response.text, uri, now)

    def _parse(self, token: str, uri: str, now: float) -> _List:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != "statuslist+jwt" or header.get("alg") not in self._algorithms:
                raise IdentityError("not a status list token with an allowed algorithm")
            _kty, key = self._jwks.key_for(str(header.get("kid", "")))
            claims = jwt.decode(
                token,
                key=key,
                algorithms=[str(header["alg"])],
                issuer=self._issuer,
                options={"require": ["iat", "sub", "iss"], "verify_aud": False},
            )
        except jwt.PyJWTError as exc:
            raise IdentityError("the status list token does not verify") from exc
        if claims.get("sub") != uri:
            raise IdentityError("the status list token is for another URI")
        bits, data = _decode_list(claims.get("status_list"))
        ttl = claims.get("ttl")
        lifetime = min(self._ttl, ttl) if isinstance(ttl, int) and ttl > 0 else self._ttl
        exp = claims.get("exp")
        expires = min(now + lifetime, exp) if isinstance(exp, int) else now + lifetime
        return _List(bits, data, expires)


def _decode_list(raw: Any) -> tuple[int, bytes]:
    if not isinstance(raw, Mapping):
        raise IdentityError("the status list token has no status_list")
    bits, lst = raw.get("bits"), raw.get("lst")
    if isinstance(bits, bool) or bits not in _BITS or not isinstance(lst, str):
        raise IdentityError("the status list is malformed")
    try:
        compressed = base64.urlsafe_b64decode(lst + "=" * (-len(lst) % 4))
        decompressor = zlib.decompressobj()
        data = decompressor.decompress(compressed, _MAX_LIST_BYTES)
    except (ValueError, zlib.error) as exc:
        raise IdentityError("the status list does not decode") from exc
    if decompressor.unconsumed_tail:
        raise IdentityError("the status list is larger than the cap")
    return int(bits), data
