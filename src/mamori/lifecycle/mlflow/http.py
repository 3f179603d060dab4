"""Bounds on MLflow's own HTTP client, for one piece of work.

MLflow's defaults (120 s per request, 7 retries with exponential backoff) hold a caller for
minutes against an unreachable server. The limits are MLflow's environment variables, read per
request, so an operator who sets them keeps their values; only the missing ones are set, and
removed again afterwards.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping

__all__ = ["bounded_http"]


@contextlib.contextmanager
def bounded_http(limits: Mapping[str, str]) -> Iterator[None]:
    """Set each ``MLFLOW_HTTP_*`` limit the environment lacks; restore the environment after."""
    added = [name for name in limits if name not in os.environ]
    os.environ.update({name: limits[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)
