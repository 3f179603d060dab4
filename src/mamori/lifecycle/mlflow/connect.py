"""``mamori mlflow connect``: create or update mamori's webhook in MLflow, then test it.

One webhook named ``mamori`` subscribes to the four events mamori acts on, with the shared
HMAC secret. Webhook management needs an MLflow admin (basic-auth makes every webhook API
admin-only). ``test_webhook`` sends a signed example delivery per event, which proves URL,
network path and secret end to end.

MLflow encrypts stored webhook secrets with ``MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY``; when the
server does not fix it, a random key is generated per start, and after a restart MLflow can no
longer decrypt the secret: every delivery fails. No API reports the server's setting, so the
command warns unless the operator confirms the key is fixed (``--encryption-key-fixed``) or the
variable is set where the command runs (a co-located server).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from mlflow.entities.webhook import WebhookEvent, WebhookEventStr, WebhookStatus
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from mamori.errors import RegistryError
from mamori.lifecycle.mlflow.webhook import EventKind

__all__ = ["WEBHOOK_NAME", "ConnectResult", "connect"]

WEBHOOK_NAME: Final = "mamori"
_KEY_VAR: Final = "MLFLOW_WEBHOOK_SECRET_ENCRYPTION_KEY"
KEY_WARNING: Final = (
    f"cannot confirm that the MLflow server fixes {_KEY_VAR}: without it MLflow generates a "
    "new key at every start and every delivery fails after a restart (the sweep still catches "
    "up). Set it on the server, then pass --encryption-key-fixed."
)


@dataclass(frozen=True, slots=True)
class ConnectResult:
    """What ``connect`` did."""

    webhook_id: str
    created: bool
    tests: tuple[tuple[str, bool, str], ...]
    """(event, success, detail) per event tested."""
    warnings: tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every test delivery succeeded."""
        return all(success for _, success, _ in self.tests)


def _events() -> list[WebhookEventStr | WebhookEvent]:
    # WebhookEvent.from_str turns "model_version.created" into MLflow's upper-case enums
    # (MODEL_VERSION / CREATED), which is what the REST API expects.
    return [WebhookEvent.from_str(kind.value) for kind in EventKind]


def connect(
    client: MlflowClient,
    *,
    url: str,
    secret: str,
    encryption_key_fixed: bool = False,
    test: bool = True,
) -> ConnectResult:
    """Create or update the ``mamori`` webhook to ``url`` and test each event."""
    if not secret:
        raise RegistryError("an HMAC secret is required (MAMORI_MLFLOW_WEBHOOK_SECRET)")
    try:
        existing = None
        token: str | None = None
        while existing is None:
            page = client.list_webhooks(max_results=100, page_token=token)
            existing = next((w for w in page if w.name == WEBHOOK_NAME), None)
            token = page.token
            if not token:
                break
        if existing is None:
            hook = client.create_webhook(
                name=WEBHOOK_NAME,
                url=url,
                events=_events(),
                description="mamori: scan every model version, gate protected aliases",
                secret=secret,
                status=WebhookStatus.ACTIVE,
            )
        else:
            hook = client.update_webhook(
                existing.webhook_id,
                url=url,
                events=_events(),
                secret=secret,
                status=WebhookStatus.ACTIVE,
            )
        results: list[tuple[str, bool, str]] = []
        if test:
            for event in _events():
                outcome = client.test_webhook(hook.webhook_id, event=event)
                detail = outcome.error_message or f"HTTP {outcome.response_status}"
                results.append((str(event), outcome.success, detail))
    except MlflowException as exc:
        msg = f"MLflow refused the webhook operation: {exc.message}"
        raise RegistryError(msg) from exc
    warnings = () if encryption_key_fixed or os.environ.get(_KEY_VAR) else (KEY_WARNING,)
    return ConnectResult(hook.webhook_id, existing is None, tuple(results), warnings)
