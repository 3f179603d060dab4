"""Revocations and conversation state in mamori's store, shared by every process.

Both used to live in the application's memory: two in-process sets of revoked subjects and
tokens, and a set of released labels on the ``Session`` object. A second gateway process, a
restart, or an app that builds a new ``Session`` per HTTP request (as stateless apps do) lost
them. Here both are rows of the store (SQLite or PostgreSQL), keyed by the principal
``(issuer, subject)`` and, for the taint, the conversation id:

1. *Revocation* rows are only ever added; ``max(id)`` is the revocation epoch that decision
   caches key on. :meth:`ConversationStore.liveness` answers "may this context be used now?"
   in one indexed query: the one check that the context factory, the authorizer and the
   gateway all call, on every use, together with ``exp``/``nbf``.
2. *Conversation labels* (the classifications released into a conversation) are one row per
   label; adding is an insert that ignores a label already there, so concurrent turns in
   different processes never lose one.

Any store failure is reported to the caller, which denies: a revocation list that cannot be
read, or a taint that cannot be recorded, never yields an allow.
"""

from __future__ import annotations

import tempfile
import time
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from sqlalchemy import exists, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from mamori.errors import ConfigError, StoreError
from mamori.store.db import Store, audit_append
from mamori.store.models import Base
from mamori.store.models_genai import ConversationLabelRow, RevocationRow

if TYPE_CHECKING:
    from sqlalchemy import Select

    from mamori.genai.context import TrustedContext
    from mamori.identity import Principal

__all__ = ["ConversationStore", "Liveness"]

#: The longest conversation id accepted (the column's width); longer ids are a caller bug.
MAX_CONVERSATION_ID: Final = 255
_REVOCATIONS = RevocationRow.__table__
_LABELS = ConversationLabelRow.__table__


@dataclass(frozen=True, slots=True)
class Liveness:
    """Whether a trusted context may be used now, and the revocation epoch it was read at."""

    refusal: str
    """Why the context may not be used (``""`` when it may)."""
    epoch: int
    """The store's revocation epoch; caches of decisions key on it."""

    @property
    def live(self) -> bool:
        """True when nothing refuses the context."""
        return not self.refusal


def _status_query(issuer: str, subject: str, token_id: str) -> Select[int | None, bool]:
    target = _REVOCATIONS.c.subject == subject
    if token_id:  # a token without a ``jti`` can only be revoked through its subject
        target = or_(target, _REVOCATIONS.c.token_id == token_id)
    revoked = exists().where(_REVOCATIONS.c.issuer == issuer, target)
    return select(select(func.max(_REVOCATIONS.c.id)).scalar_subquery(), revoked)


class ConversationStore:
    """Store-backed revocations and per-conversation taint for :mod:`mamori.genai`."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        """Use ``store`` (already migrated); ``exp`` and ``nbf`` are checked against ``clock``."""
        self._store = store
        self.clock = clock

    @classmethod
    def ephemeral(cls, *, clock: Callable[[], float] = time.time) -> ConversationStore:
        """A private SQLite store in a temporary directory, removed with the object.

        For tests, demos and single-process tools. Anything that runs in more than one process,
        or must survive a restart, passes the deployment's :class:`Store` instead.
        """
        folder = tempfile.TemporaryDirectory(prefix="mamori-genai-")
        store = Store(f"sqlite:///{folder.name}/genai.db")
        try:
            Base.metadata.create_all(store.engine)
        except SQLAlchemyError as exc:
            raise StoreError("cannot create the temporary GenAI state store") from exc
        state = cls(store, clock=clock)
        weakref.finalize(state, _close, store, folder)
        return state

    # --- revocation ------------------------------------------------------------------------
    def revoke_subject(self, issuer: str, subject: str, *, reason: str = "", by: str = "") -> None:
        """Revoke every token of ``(issuer, subject)``, in every process, from now on."""
        self._revoke(issuer, subject=subject, token_id=None, reason=reason, by=by)

    def revoke_token(self, issuer: str, token_id: str, *, reason: str = "", by: str = "") -> None:
        """Revoke one token of ``issuer`` by its ``jti``."""
        if not token_id:
            raise ConfigError("a token without a jti can only be revoked through its subject")
        self._revoke(issuer, subject=None, token_id=token_id, reason=reason, by=by)

    def _revoke(
        self, issuer: str, *, subject: str | None, token_id: str | None, reason: str, by: str
    ) -> None:
        if not issuer:
            raise ConfigError("a revocation needs the token issuer")
        target = f"subject {subject!r}" if subject is not None else f"token {token_id!r}"
        with self._store.write() as session:
            session.add(
                RevocationRow(
                    issuer=issuer,
                    subject=subject,
                    token_id=token_id,
                    reason=reason,
                    revoked_by=by,
                    revoked_at=datetime.now(UTC),
                )
            )
            # The revocation and its audit record commit together or not at all.
            audit_append(
                session,
                principal=by or "operator",
                action="genai.revoke",
                resource=f"{issuer} {target}",
                decision="revoked",
                reason=reason,
            )

    def liveness(self, ctx: TrustedContext) -> Liveness:
        """May ``ctx`` be used now? Checks ``exp``, ``nbf`` and both kinds of revocation.

        A store failure is a refusal (with epoch ``-1``, which no cache entry has).
        """
        now = self.clock()
        if now > ctx.principal.expires_at + ctx.leeway_seconds:
            return Liveness("token expired", -1)
        if now + ctx.leeway_seconds < ctx.not_before:
            return Liveness("token not yet valid", -1)
        try:
            epoch, revoked = self._status(ctx.principal)
        except StoreError:
            return Liveness("revocation state unavailable", -1)
        return Liveness("principal revoked" if revoked else "", epoch)

    def _status(self, principal: Principal) -> tuple[int, bool]:
        query = _status_query(principal.issuer, principal.subject, principal.token_id)
        try:
            with self._store.engine.connect() as conn:
                row = conn.execute(query).one()
        except SQLAlchemyError as exc:
            raise StoreError("reading the revocation list failed") from exc
        return int(row[0] or 0), bool(row[1])

    # --- conversation state ---------------------------------------------------------------
    def labels(self, principal: Principal, conversation_id: str) -> frozenset[str]:
        """The classifications released so far into this principal's conversation."""
        _check_conversation_id(conversation_id)
        query = select(_LABELS.c.label).where(
            _LABELS.c.issuer == principal.issuer,
            _LABELS.c.subject == principal.subject,
            _LABELS.c.conversation_id == conversation_id,
        )
        try:
            with self._store.engine.connect() as conn:
                return frozenset(conn.execute(query).scalars())
        except SQLAlchemyError as exc:
            raise StoreError("reading the conversation state failed") from exc

    def add_labels(
        self, principal: Principal, conversation_id: str, labels: Iterable[str], *, tool: str = ""
    ) -> None:
        """Record ``labels`` as released into the conversation (before the data is returned)."""
        _check_conversation_id(conversation_id)
        rows = [
            {
                "issuer": principal.issuer,
                "subject": principal.subject,
                "conversation_id": conversation_id,
                "label": label,
                "first_tool": tool[:255],
                "first_at": datetime.now(UTC),
            }
            for label in sorted(set(labels))
        ]
        if not rows:
            return
        dialect = postgresql if not self._store.is_sqlite else sqlite
        statement = dialect.insert(_LABELS).values(rows).on_conflict_do_nothing()
        with self._store.write() as session:
            session.execute(statement)


def _check_conversation_id(conversation_id: str) -> None:
    if len(conversation_id) > MAX_CONVERSATION_ID:
        msg = f"conversation id longer than {MAX_CONVERSATION_ID} characters"
        raise ConfigError(msg)


def _close(store: Store, folder: tempfile.TemporaryDirectory[str]) -> None:
    store.dispose()
    folder.cleanup()
