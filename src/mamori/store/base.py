"""The declarative base every mamori table is declared on.

Tables live in several modules (``models``, ``models_mlflow``); each imports this leaf, and
:mod:`mamori.store.schema` imports them all so that ``Base.metadata`` is complete for Alembic
and the schema test, without the model modules importing each other.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON
from sqlalchemy.orm import DeclarativeBase

__all__ = ["Base"]


class Base(DeclarativeBase):
    """Declarative base of every mamori table."""

    type_annotation_map = {dict[str, Any]: JSON}  # noqa: RUF012 - SQLAlchemy's documented form
