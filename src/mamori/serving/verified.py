"""Only approved bytes load: copy, hash, ask the gate, then start the sandbox on that copy.

The model is first copied into a private directory (mode 0700) that nothing else writes to.
Every file of that copy is hashed and the gate is asked about exactly those digests (the same
check as ``mamori verify``). Only when every file is deployable does the sandboxed loader
start, and it reads that same copy, read-only. A byte changed at the source after the copy
changes nothing that loads; a byte changed before it is a different digest the gate has
never approved.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from mamori.lifecycle.verify import Gate, VerifyResult, hash_tree, verify_files
from mamori.serving.sandbox import SandboxedModel, SandboxError, SandboxLimits, start

__all__ = ["NotDeployableError", "serve_verified"]


class NotDeployableError(SandboxError):
    """The gate did not approve the exact bytes; nothing was loaded."""

    def __init__(self, result: VerifyResult) -> None:
        super().__init__(f"{result.target}: not deployable: {result.reason}")
        self.result = result


@contextlib.contextmanager
def serve_verified(
    gate: Gate,
    source: Path,
    *,
    flavour: str,
    entry: str | None = None,
    limits: SandboxLimits | None = None,
    allow_weaker: bool = False,
) -> Iterator[tuple[VerifyResult, SandboxedModel]]:
    """Verify a private copy of ``source`` (a model file) and serve it from the sandbox.

    Every file beside the model in its directory is copied and verified too: a loader may read
    them (``entry`` code, configs), so they are part of what runs.
    """
    source = source.resolve()
    if not source.is_file():
        msg = f"{source}: not a model file"
        raise SandboxError(msg)
    with tempfile.TemporaryDirectory(prefix="mamori-verified-") as tmp:
        private = Path(tmp) / "model"
        # Links are followed: what they point to is copied, hashed and verified like the rest.
        shutil.copytree(source.parent, private)
        # The sandbox's nobody must read the copy; the temporary directory above it is 0700.
        os.chmod(private, 0o755)  # noqa: S103
        result = verify_files(gate, str(source), hash_tree(private))
        if not result.deployable:
            raise NotDeployableError(result)
        with start(
            private / source.name,
            flavour=flavour,
            entry=entry,
            limits=limits,
            allow_weaker=allow_weaker,
        ) as running:
            yield result, running
