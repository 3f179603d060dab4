"""Service configuration: ``MAMORI_*`` environment variables and an optional ``mamori.toml``.

The embedded defaults run everything on one machine (SQLite store, SQLite-backed queue, a local
development issuer). Pointing ``MAMORI_DATABASE_URL`` at PostgreSQL and ``MAMORI_QUEUE_URL`` at
Redis scales out with no code change.
"""

from __future__ import annotations

import ipaddress
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mamori.errors import ConfigError

__all__ = ["Settings", "load_settings"]


class Settings(BaseSettings):
    """Every service setting, validated. Unknown keys are errors, not silently ignored."""

    model_config = SettingsConfigDict(
        env_prefix="MAMORI_",
        extra="forbid",
        toml_file="mamori.toml",
        frozen=True,
    )

    data_dir: Path = Path(".mamori")
    """Where the embedded store, queue, quarantine and dev issuer keys live."""
    database_url: str | None = None
    """SQLAlchemy URL; default ``sqlite:///<data_dir>/mamori.db``."""
    queue_url: str | None = None
    """``redis://…`` for Redis-backed Huey; default SQLite at ``<data_dir>/queue.db``."""
    workers: int = Field(default=1, ge=1, le=64)
    reconcile_cron: str = "* * * * *"
    """When workers re-queue every artifact lacking a live or finished scan under the current
    ruleset (lost jobs, dead workers, a new ruleset): ``minute hour day month weekday``."""
    scan_stale_seconds: int = Field(default=120, ge=1)
    """A RUNNING scan without a heartbeat for this long is presumed dead and re-queued."""

    host: str = "127.0.0.1"
    port: int = Field(default=8750, ge=1, le=65535)
    max_upload_bytes: int = Field(default=8 << 30, ge=1)

    oidc_issuer: str | None = None
    """Accepted ``iss``; default: the local development issuer."""
    oidc_audience: str = "mamori"
    jwks_url: str | None = None
    jwks_file: Path | None = None
    jwt_algorithms: frozenset[str] = frozenset({"RS256", "ES256"})
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    roles_claim: str = "roles"
    mfa_claim: str = "amr"
    """Claim listing authentication methods; ``mfa_value`` in it means MFA was used."""
    mfa_value: str = "mfa"
    dev_issuer: bool = True
    """Run a local development issuer (``mamori token mint``). Turn off in production."""

    trusted_proxies: tuple[str, ...] = ()
    """CIDRs whose ``X-Forwarded-For`` header is believed."""
    allow_api: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    """CIDRs that may call the ``/v1`` API."""
    allow_admin: tuple[str, ...] = ("127.0.0.0/8", "::1/128")
    """CIDRs that may call admin routes (audit export, overrides, token management)."""
    allow_hooks: tuple[str, ...] = ("0.0.0.0/0", "::/0")
    """CIDRs that may deliver webhooks."""

    policy_dir: Path | None = None
    """A directory with ``lifecycle.cedar`` and ``lifecycle.cedarschema`` replacing the defaults."""
    scan_policy: Path | None = None
    """A scan policy TOML (threshold, allow/deny globals, suppressions)."""

    @field_validator("trusted_proxies", "allow_api", "allow_admin", "allow_hooks")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """Explicit arguments win, then the environment, then ``mamori.toml``."""
        del dotenv_settings, file_secret_settings
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))

    @cached_property
    def resolved_database_url(self) -> str:
        """The store URL, defaulting to SQLite inside ``data_dir``."""
        return self.database_url or f"sqlite:///{(self.data_dir / 'mamori.db').resolve()}"

    @property
    def blob_dir(self) -> Path:
        """The quarantine directory of imported artifacts."""
        return self.data_dir / "blobs"

    @property
    def issuer_dir(self) -> Path:
        """Where the development issuer keeps its key pair and JWKS."""
        return self.data_dir / "issuer"

    @property
    def dev_issuer_url(self) -> str:
        """The ``iss`` of the development issuer."""
        return f"http://{self.host}:{self.port}/dev-issuer"


def load_settings(**overrides: Any) -> Settings:
    """Build settings from the environment and ``mamori.toml``; errors name the key."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        msg = f"invalid mamori configuration: {problems}"
        raise ConfigError(msg) from exc
