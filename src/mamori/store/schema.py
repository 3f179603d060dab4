"""The complete schema: every table module imported, so ``metadata`` lists every table.

Alembic's environment and the migrations-vs-models test compare against this. A new table
module is added here and nowhere else.
"""

from __future__ import annotations

from sqlalchemy import MetaData

from mamori.store import models, models_genai, models_mlflow
from mamori.store.base import Base

__all__ = ["metadata"]

metadata: MetaData = Base.metadata
"""Every mamori table (the model modules are imported for their side effect)."""

_TABLE_MODULES = (models, models_genai, models_mlflow)
