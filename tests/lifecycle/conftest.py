from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path
from types import MappingProxyType

import pytest

from mamori.identity.principal import Principal
from mamori.lifecycle import BlobStore, Lifecycle, LifecycleAuthorizer
from mamori.policy.engine import PolicyEngine
from mamori.store import Store


class _Reduce:
    """Unpickling this would run `true`; the tests only ever scan the bytes."""

    def __reduce__(self):
        import os

        return (os.system, ("true",))


BENIGN = pickle.dumps({"weights": [1.0, 2.0], "name": "tiny"}, protocol=4)
MALICIOUS = pickle.dumps(_Reduce(), protocol=4)


def make_principal(subject: str, *roles: str, mfa: bool = True) -> Principal:
    return Principal(
        subject=subject,
        issuer="https://idp.test",
        tenant="acme",
        roles=frozenset(roles),
        attributes=MappingProxyType({"mfa": "true" if mfa else "false"}),
    )


@pytest.fixture
def store(database_url: str) -> Store:
    s = Store(database_url)
    s.migrate()
    yield s
    s.dispose()


@pytest.fixture
def queued() -> list[str]:
    return []


@pytest.fixture
def lifecycle(store: Store, tmp_path: Path, queued: list[str]) -> Lifecycle:
    return Lifecycle(
        store,
        BlobStore(tmp_path / "blobs"),
        LifecycleAuthorizer(PolicyEngine.packaged("lifecycle")),
        enqueue=queued.append,
    )


@pytest.fixture
def upload(lifecycle: Lifecycle, tmp_path: Path) -> Callable[..., str]:
    def _upload(data: bytes, *, by: str = "ivan", name: str = "model.pkl") -> str:
        path = tmp_path / f"up-{len(data)}-{hash(data) & 0xFFFF}"
        path.write_bytes(data)
        return lifecycle.import_file(make_principal(by, "importer"), path, name=name).sha256

    return _upload
