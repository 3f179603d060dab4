"""The red-team harness: prove in a subprocess that a real loader runs a harmless payload.

A bypass test is worth something only if the attack really works without mamori. Each test
builds a file whose payload creates a marker file, loads it with the loader a victim would use
in a *separate* Python process (never in the test process), and then asserts two things: the
marker exists (the attack works) and mamori's verdict is UNSAFE (the attack is stopped).

Payloads must be harmless: they create the marker file and nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mamori.findings import Verdict
from mamori.scan import scan_path

# What a victim runs. `P` is the path of the file (or folder) under attack.
LOADERS: dict[str, str] = {
    "pickle": "import pickle\nwith open(P, 'rb') as f: pickle.load(f)",
    "torch": "import torch\ntorch.load(P, weights_only=False)",
    "joblib": "import joblib\njoblib.load(P)",
    "numpy": "import numpy\nnumpy.load(P, allow_pickle=True)",
    "numpy-npz": ("import numpy\nz = numpy.load(P, allow_pickle=True)\nfor k in z.files: z[k]"),
    "dill": "import dill\nwith open(P, 'rb') as f: dill.load(f)",
    "auto-config": (
        "from transformers import AutoConfig\nAutoConfig.from_pretrained(P, trust_remote_code=True)"
    ),
    "auto-tokenizer": (
        "from transformers import AutoTokenizer\n"
        "AutoTokenizer.from_pretrained(P, trust_remote_code=True)"
    ),
    "keras-unsafe": (
        "import os\nos.environ.setdefault('KERAS_BACKEND', 'torch')\nimport keras\n"
        "keras.saving.load_model(P, safe_mode=False)"
    ),
}


@dataclass(frozen=True, slots=True)
class Attack:
    """The marker a payload creates, and how to run a loader on a file in a subprocess."""

    marker: Path

    def payload_command(self) -> str:
        """A shell command that creates the marker (for os.system-style payloads)."""
        return f"touch {self.marker}"

    def runs(self, loader: str, path: Path, *, timeout: float = 120.0) -> bool:
        """Load ``path`` with ``loader`` (a key of LOADERS or Python code using ``P``).

        Returns whether the payload ran (the marker exists afterwards). The loader may raise
        after the payload ran (many gadgets break the stream afterwards); that still counts.
        """
        if self.marker.exists():
            self.marker.unlink()
        code = LOADERS.get(loader, loader)
        script = f"P = {str(path)!r}\n" + textwrap.dedent(code)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
        env.setdefault("HF_HUB_OFFLINE", "1")
        env.setdefault("TRANSFORMERS_OFFLINE", "1")
        subprocess.run(  # noqa: PLW1510 - a loader failing after the payload ran is expected
            [sys.executable, "-c", script],
            cwd=path.parent,
            env=env,
            capture_output=True,
            timeout=timeout,
        )
        return self.marker.exists()


@pytest.fixture
def attack(tmp_path: Path) -> Attack:
    """An Attack whose marker lives in this test's temporary directory."""
    return Attack(marker=tmp_path / "PAYLOAD-RAN")


@pytest.fixture
def verdict_of() -> Callable[[Path], Verdict]:
    """mamori's verdict for a path, with the default policy."""

    def _verdict(path: Path) -> Verdict:
        return scan_path(path).verdict

    return _verdict
