"""Start-up stays cheap: ``mamori scan`` is benchmarked including interpreter start-up.

Each check runs in a fresh interpreter, because the test process has long since imported
everything. They assert which modules are loaded, not timings, so a busy machine cannot make
them flaky; ``python -X importtime -c "import mamori.cli"`` gives the numbers.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from mamori.cli.service import _SCOPE_VALUES
from mamori.identity.apitokens import Scope

# Libraries that only some commands or some formats need; none may load at start-up.
_HEAVY = (
    "cedarpy",
    "google.protobuf",
    "h5py",
    "huey",
    "jinja2",
    "mlflow",
    "msgpack",
    "numpy",
    "onnx",
    "py7zr",
    "pydantic",
    "pydantic_settings",
    "redis",
    "sqlalchemy",
    "torch",
    "uvicorn",
    "yaml",
)


def _loaded_after(code: str) -> list[str]:
    probe = textwrap.dedent(code) + textwrap.dedent(
        f"""
        import json, sys
        print(json.dumps([m for m in {_HEAVY!r} if m in sys.modules]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    loaded: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return loaded


def test_importing_the_cli_loads_no_heavy_library():
    """``import mamori.cli`` (what every command pays) imports none of the heavy libraries."""
    assert _loaded_after("import mamori.cli") == []


def test_scanning_a_pickle_with_text_output_loads_no_other_formats_library():
    """Sniffing is by magic bytes: a pickle scan never imports onnx, py7zr, jinja2, yaml..."""
    code = """
        import pickle
        from mamori.scan import scan_bytes
        from mamori.scan.report import ReportFormat, render

        report = scan_bytes(pickle.dumps({"a": [1, 2.0]}), name="x.pkl")
        render([report], ReportFormat.TEXT)
    """
    assert _loaded_after(code) == []


def test_the_scope_names_in_help_match_the_scope_enum():
    """``token create --help`` lists the scopes without importing the store (SQLAlchemy)."""
    assert tuple(s.value for s in Scope) == _SCOPE_VALUES
