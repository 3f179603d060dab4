"""The console's Jinja2 environment: autoescaped, and inert for hostile text.

Model files, registry names, tags and evidence are attacker-controlled. Every expression a
template prints passes through :func:`mamori.text.printable` (control, bidi and other invisible
characters become visible escapes, the same rule as the text report) and then through Jinja2's
HTML autoescaping. Templates are the package's own files; no template text ever comes from a
model or a request.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from mamori.text import printable

__all__ = ["STATIC", "TEMPLATES", "environment"]

TEMPLATES: Final = Path(__file__).parent / "templates"
STATIC: Final = Path(__file__).parent / "static"


def _finalize(value: Any) -> Any:
    # Markup is the templates' own output (macros, blocks); everything else is data.
    if isinstance(value, Markup) or not isinstance(value, str):
        return value
    return printable(value)


def _when(moment: datetime | None) -> str:
    return "—" if moment is None else moment.strftime("%Y-%m-%d %H:%M:%S UTC")


def _short(digest: str) -> str:
    return digest[:12]


def _joined(items: Iterable[object], separator: str = ", ") -> str:
    # Jinja2's own join returns Markup (escaped, but not made printable): never use it on data.
    return separator.join(printable(str(item)) for item in items)


def environment() -> Environment:
    """The console's template environment."""
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,  # every template is HTML: no extension-based opt-out
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = _when
    env.filters["short"] = _short
    env.filters["joined"] = _joined
    del env.filters["join"]  # see _joined
    return env
