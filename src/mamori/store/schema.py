"""The complete schema: every table module imported, so ``metadata`` lists every table.

Alembic's environment and the migrations-vs-models test compare against this. A new table
module is added here and nowhere else.
"""

from __future__ import annotations

from sqlalchemy import MetaData

# Imported for their side effect: each module declares its tables on Base.
from mamori.store import models, models_genai, models_mlflow  # noqa: F401
from mamori.store.base import Base

__all__ = ["metadata"]

metadata: MetaData = Base.metadata
"""Every mamori table (the model modules are imported for their side effect)."""
