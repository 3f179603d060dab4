"""Service configuration: ``MAMORI_*`` environment variables and an optional ``mamori.toml``.

The embedded defaults run everything on one machine (SQLite store, SQLite-backed queue, a local
development issuer). Pointing ``MAMORI_DATABASE_URL`` at PostgreSQL and ``MAMORI_QUEUE_URL`` at
Redis scales out with no code change.
"""

from __future__ import annotations

import ipaddress
import os
from functools import cached_property
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from mamori.errors import ConfigError

__all__ = ["IdentitySource", "Settings", "load_settings"]


def _hf_endpoint() -> str:
    # Same variable and default as huggingface_hub.constants.ENDPOINT, read when settings are
    # built (not at import time), so tests and operators can point at a mirror.
    return os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")


def _hf_cache_dir() -> Path:
    # huggingface_hub's resolution order: HF_HUB_CACHE, then $HF_HOME/hub, then ~/.cache.
    if cache := os.environ.get("HF_HUB_CACHE"):
        return Path(cache).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", "~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


class IdentitySource(BaseModel):
    """How the configured issuer's claims become mamori roles and principal attributes.

    In ``mamori.toml``::

        [identity.roles.groups]          # claim "groups": IdP value -> mamori roles
        "ml-approvers" = ["approver"]
        "ml-admins" = ["admin", "approver"]

        [identity.attributes]            # claim -> principal attribute
        department = "department"

    A value the table does not list grants nothing (see :mod:`mamori.identity.claims`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    roles: dict[str, dict[str, tuple[str, ...]]] | None = None
    """Claim → IdP value → mamori roles. Default: the ``roles_claim`` may list mamori's own
    lifecycle role names (viewer, importer, approver, deployer, admin), each granting itself;
    any other name in it grants nothing."""
    attributes: dict[str, str] = Field(default_factory=dict)
    """Claim → principal attribute name (string claims only)."""
    exclusive: tuple[tuple[str, ...], ...] = ()
    """Sets of mamori roles one token may not hold together (it is refused)."""
    case_sensitive_issuers: tuple[str, ...] = ()
    """Issuers whose subjects differ by case (opaque ids). Others compare NFKC-casefolded
    for four eyes: ``Ivan`` and ``ivan`` of one issuer are one person."""


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
    identity: IdentitySource = Field(default_factory=IdentitySource)
    """Claim mapping and subject comparison of the configured issuer (``[identity]``)."""
    jwks_refresh_seconds: float = Field(default=60.0, ge=1.0, le=86400.0)
    """A token naming a key id the JWKS lacks triggers at most one background JWKS refresh per
    this many seconds; unknown ids are refused at once (never waited on)."""
    jwks_ttl_seconds: float = Field(default=300.0, ge=1.0, le=86400.0)
    """Known JWKS keys are refreshed in the background after this long (key rotation)."""
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

    hf_endpoint: str = Field(default_factory=_hf_endpoint)
    """The Hugging Face hub ``mamori pull`` talks to (default: ``HF_ENDPOINT``, else hf.co)."""
    hf_cache_dir: Path = Field(default_factory=_hf_cache_dir)
    """Where released pulls go: the HF cache (default: ``HF_HUB_CACHE`` / ``HF_HOME/hub``)."""
    hf_token: SecretStr | None = None
    """Access token for private or gated repos; sent to ``hf_endpoint`` only, never to a CDN."""
    hf_redirect_hosts: tuple[str, ...] = (
        "cdn-lfs.huggingface.co",
        "cdn-lfs-us-1.huggingface.co",
        "cdn-lfs-eu-1.huggingface.co",
        "cdn-lfs.hf.co",
        "cdn-lfs-us-1.hf.co",
        "cdn-lfs-eu-1.hf.co",
        "cas-bridge.xethub.hf.co",
    )
    """HTTPS hosts a download may be redirected to besides the endpoint itself (the hub's
    LFS/Xet CDNs). Every byte is checked against the tree's digest whatever host served it."""
    hf_max_file_bytes: int = Field(default=64 << 30, ge=1)
    """A pull refuses, before downloading anything, a repo with a larger file."""
    hf_max_total_bytes: int = Field(default=256 << 30, ge=1)
    """A pull refuses, before downloading anything, a repo larger than this in total."""
    hf_timeout_seconds: float = Field(default=60.0, gt=0)
    """Connect/read timeout of each hub request (a stalled hub fails the pull, never hangs)."""

    # --- MLflow integration (mamori.lifecycle.mlflow) -----------------------------------------
    mlflow_tracking_uri: str | None = None
    """The MLflow tracking server mamori resolves, sweeps and gates. Its credentials come from
    MLflow's own ``MLFLOW_TRACKING_USERNAME``/``MLFLOW_TRACKING_PASSWORD`` (MANAGE or admin)."""
    mlflow_webhook_secret: SecretStr | None = None
    """HMAC secret shared with MLflow's webhooks; without it every delivery is refused."""
    mlflow_protected_aliases: tuple[str, ...] = ("production", "champion")
    """Aliases (compared case-insensitively) that only a SAFE+APPROVED version may carry."""
    mlflow_sweep_cron: str = "*/5 * * * *"
    """When workers reconcile the registry against the store (lost webhooks, renames, stages)."""
    mlflow_rescan_cron: str = "17 3 * * *"
    """When workers re-download every known version (detects artifacts changed in place)."""
    mlflow_remove_unapproved_alias: bool = True
    """Remove a protected alias, or archive a Production stage, held by a version mamori does
    not allow (audited)."""
    mlflow_max_version_bytes: int = Field(default=64 << 30, ge=1)
    """A version whose artifacts exceed this in total is refused (never bound, never allowed):
    checked on the store's listing before any download, and again on the downloaded bytes."""
    gate_url: str | None = None
    """Read by the ``mamori-gate`` MLflow plugin: where mamori's API answers the gate."""
    gate_token: SecretStr | None = None
    """Read by the ``mamori-gate`` plugin: a ``mamori_`` API token with the ``gate`` scope."""
    gate_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    """The plugin denies (fails closed) when mamori has not answered within this time."""

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
