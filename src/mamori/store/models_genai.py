"""Tables of GenAI authorization: revocations and conversation state, shared by processes.

Kept apart from :mod:`mamori.store.models` (same declarative ``Base``) so the GenAI schema reads
as one unit; revision ``0004`` creates them. Both are keyed by the principal, which is the pair
``(issuer, subject)``: a subject is unique only within its issuer.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, DateTime, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from mamori.store.base import Base

__all__ = ["ConversationLabelRow", "RevocationRow"]


class RevocationRow(Base):
    """One revocation: every token of a subject, or one token by its ``jti``.

    Rows are only ever added, so ``max(id)`` is a revocation epoch that every process can read
    (decision caches key on it) and a revocation can never be undone by a concurrent writer.
    """

    __tablename__ = "genai_revocations"
    __table_args__ = (
        CheckConstraint(
            "(subject IS NULL) <> (token_id IS NULL)", name="ck_genai_revocation_one_target"
        ),
        Index("ix_genai_revocations_subject", "issuer", "subject"),
        Index("ix_genai_revocations_token", "issuer", "token_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    issuer: Mapped[str] = mapped_column(String(512))
    subject: Mapped[str | None] = mapped_column(String(512), default=None)
    token_id: Mapped[str | None] = mapped_column(String(512), default=None)
    reason: Mapped[str] = mapped_column(Text, default="")
    revoked_by: Mapped[str] = mapped_column(String(512), default="")
    revoked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ConversationLabelRow(Base):
    """A data classification released into one conversation (its taint).

    One row per label, so concurrent turns of the same conversation in different processes
    only ever add rows (an insert that conflicts is already there) and never lose a label.
    """

    __tablename__ = "genai_conversation_labels"

    issuer: Mapped[str] = mapped_column(String(512), primary_key=True)
    subject: Mapped[str] = mapped_column(String(512), primary_key=True)
    conversation_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    label: Mapped[str] = mapped_column(String(128), primary_key=True)
    first_tool: Mapped[str] = mapped_column(String(255), default="")
    first_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
