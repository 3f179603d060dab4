"""mlflow versions: bind the registry object (identity) and the manifest of its files

Revision ID: 0005_registry_identity
Revises: 0004_principal_issuer
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_registry_identity"
down_revision = "0004_principal_issuer"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("mlflow_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("identity", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("manifest", sa.JSON(), nullable=True))
        # Rows bound before this revision have no identity or manifest: the gate denies
        # them ("bound before registry identities were recorded") until a rescan binds them.
        batch_op.add_column(sa.Column("drift", sa.Text(), nullable=False, server_default=""))
        batch_op.add_column(sa.Column("verified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("mlflow_versions", schema=None) as batch_op:
        batch_op.drop_column("verified_at")
        batch_op.drop_column("drift")
        batch_op.drop_column("manifest")
        batch_op.drop_column("identity")
