"""artifacts: the importer's issuer, so four eyes compares (issuer, subject) principals

Existing rows are backfilled from their ``import`` audit record, whose principal is
``issuer|subject``. A row without one keeps ``""``, which the authorizer reads as "same issuer
as whoever asks" (the stricter reading for four eyes).

Revision ID: 0004_principal_issuer
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_principal_issuer"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "imported_by_issuer", sa.String(length=255), nullable=False, server_default=""
            )
        )
    bind = op.get_bind()
    artifacts = sa.table(
        "artifacts",
        sa.column("id", sa.Integer),
        sa.column("sha256", sa.String),
        sa.column("imported_by", sa.String),
        sa.column("imported_by_issuer", sa.String),
    )
    audit = sa.table(
        "audit_log",
        sa.column("seq", sa.Integer),
        sa.column("principal", sa.String),
        sa.column("action", sa.String),
        sa.column("resource", sa.String),
    )
    rows = bind.execute(sa.select(artifacts.c.id, artifacts.c.sha256, artifacts.c.imported_by))
    for artifact_id, sha256, subject in rows.all():
        first = bind.execute(
            sa.select(audit.c.principal)
            .where(audit.c.action == "import", audit.c.resource == sha256)
            .order_by(audit.c.seq)
            .limit(1)
        ).scalar()
        suffix = f"|{subject}"
        if first is None or not first.endswith(suffix):
            continue
        bind.execute(
            sa.update(artifacts)
            .where(artifacts.c.id == artifact_id)
            .values(imported_by_issuer=first[: -len(suffix)])
        )


def downgrade() -> None:
    """Revert this revision."""
    with op.batch_alter_table("artifacts", schema=None) as batch_op:
        batch_op.drop_column("imported_by_issuer")
