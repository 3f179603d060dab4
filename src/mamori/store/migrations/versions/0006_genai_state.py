"""genai: store-backed revocations and conversation state (taint) keyed by principal

Revision ID: 0006_genai_state
Revises: 0005_registry_identity
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_genai_state"
down_revision = "0005_registry_identity"
branch_labels = None
depends_on = None


def upgrade() -> None:
    """Apply this revision."""
    op.create_table(
        "genai_revocations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=True),
        sa.Column("token_id", sa.String(length=512), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("revoked_by", sa.String(length=512), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "(subject IS NULL) <> (token_id IS NULL)", name="ck_genai_revocation_one_target"
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("genai_revocations", schema=None) as batch_op:
        batch_op.create_index("ix_genai_revocations_subject", ["issuer", "subject"], unique=False)
        batch_op.create_index("ix_genai_revocations_token", ["issuer", "token_id"], unique=False)
    op.create_table(
        "genai_conversation_labels",
        sa.Column("issuer", sa.String(length=512), nullable=False),
        sa.Column("subject", sa.String(length=512), nullable=False),
        sa.Column("conversation_id", sa.String(length=255), nullable=False),
        sa.Column("label", sa.String(length=128), nullable=False),
        sa.Column("first_tool", sa.String(length=255), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("issuer", "subject", "conversation_id", "label"),
    )


def downgrade() -> None:
    """Revert this revision."""
    op.drop_table("genai_conversation_labels")
    with op.batch_alter_table("genai_revocations", schema=None) as batch_op:
        batch_op.drop_index("ix_genai_revocations_token")
        batch_op.drop_index("ix_genai_revocations_subject")
    op.drop_table("genai_revocations")
