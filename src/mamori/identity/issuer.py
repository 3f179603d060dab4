"""A local development issuer: mints signed tokens and publishes a JWKS file.

The key pair lives in a directory the operator chooses (created ``0700``, private key ``0600``).
It stands in for an OIDC identity provider in tests, demos and ``mamori token mint``; relying
parties verify its tokens through the very same :func:`mamori.identity.verify_token` path.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from mamori.errors import IdentityError

__all__ = ["DevIssuer"]

_PRIVATE_NAME = "issuer-key.pem"
_JWKS_NAME = "jwks.json"


class DevIssuer:
    """Mint tokens with a local key pair; :attr:`jwks_path` is what verifiers configure."""

    def __init__(
        self,
        directory: Path,
        *,
        issuer: str,
        audience: str,
        algorithm: Literal["RS256", "ES256"] = "ES256",
    ) -> None:
        """Load the key pair from ``directory`` or create one there."""
        self.directory = directory
        self.issuer = issuer
        self.audience = audience
        self.algorithm = algorithm
        self._private = self._load_or_create()
        self.kid = self._kid()
        self._write_jwks()

    @property
    def jwks_path(self) -> Path:
        """The JWKS file holding this issuer's public key."""
        return self.directory / _JWKS_NAME

    def _load_or_create(self) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
        path = self.directory / _PRIVATE_NAME
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            if path.exists():
                key = serialization.load_pem_private_key(path.read_bytes(), password=None)
                if not isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey):
                    raise IdentityError("issuer key has an unsupported type")
                return key
            new: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
            if self.algorithm == "RS256":
                new = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            else:
                new = ec.generate_private_key(ec.SECP256R1())
            pem = new.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
        except (OSError, ValueError) as exc:
            msg = f"cannot load or create the issuer key in {self.directory}"
            raise IdentityError(msg) from exc
        return new

    def _public_jwk(self) -> dict[str, Any]:
        public = self._private.public_key()
        if isinstance(public, rsa.RSAPublicKey):
            jwk: dict[str, Any] = RSAAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        return jwk

    def _kid(self) -> str:
        # RFC 7638 thumbprint-like id: stable for the key, so rotating the key changes the kid.
        canonical = json.dumps(self._public_jwk(), sort_keys=True, separators=(",", ":"))

        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def _write_jwks(self) -> None:
        jwk = {**self._public_jwk(), "kid": self.kid, "alg": self.algorithm, "use": "sig"}
        try:
            self.jwks_path.write_text(json.dumps({"keys": [jwk]}, indent=2), encoding="utf-8")
        except OSError as exc:
            msg = f"cannot write {self.jwks_path}"
            raise IdentityError(msg) from exc

    def mint(
        self,
        subject: str,
        *,
        roles: Iterable[str] = (),
        tenant: str = "",
        ttl_seconds: int = 900,
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """Return a signed token for ``subject``; ``claims`` may override any default claim."""
        now = int(time.time())
        payload: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "iat": now,
            "exp": now + ttl_seconds,
            "jti": secrets.token_hex(8),
            "roles": sorted(roles),
            "tenant": tenant,
        }
        payload.update(claims or {})
        return jwt.encode(
            payload,
            self._private,
            algorithm=self.algorithm,
            headers={"kid": self.kid, **(headers or {})},
        )
