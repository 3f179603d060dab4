"""mlflow break-glass: record the bound identity and manifest a grant was made for

Revision ID: 0007_break_glass_binding
Revises: 0006_genai_state
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_break_glass_binding"
down_revision = "0006_genai_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("mlflow_break_glass", schema=None) as batch_op:
        # Grants made before this revision have none: they apply only while the version
        # stays unbound, so a rebinding (rename swap, delete and re-register) voids them.
        batch_op.add_column(sa.Column("binding", sa.JSON(), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("mlflow_break_glass", schema=None) as batch_op:
        batch_op.drop_column("binding")
