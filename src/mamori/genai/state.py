"""Revocations and conversation state in mamori's store, shared by every process.

Both used to live in the application's memory: two in-process sets of revoked subjects and
tokens, and a set of released labels on the ``Session`` object. A second gateway process, a
restart, or an app that builds a new ``Session`` per HTTP request (as stateless apps do) lost
them. Here both are rows of the store (SQLite or PostgreSQL), keyed by the principal
``(issuer, subject)`` and, for the taint, the conversation id:

1. *Revocation* rows are only ever added; ``max(id)`` is the revocation epoch that decision
   caches key on. :meth:`ConversationStore.liveness` answers "may this context be used now?"
   in one indexed query: the one check that the context factory, the authorizer and the
   gateway all call, on every use, together with ``exp``/``nbf`` and, when configured, the
   issuer's OAuth Token Status List (:mod:`mamori.genai.statuslist`).
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
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from sqlalchemy import bindparam, exists, func, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from mamori.errors import ConfigError, IdentityError, StoreError
from mamori.store.db import Store, audit_append
from mamori.store.models import Base
from mamori.store.models_genai import ConversationLabelRow, RevocationRow

if TYPE_CHECKING:
    from sqlalchemy import Engine, Select

    from mamori.genai.context import TrustedContext
    from mamori.genai.statuslist import StatusListSource
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


#: Is ``(issuer, subject)`` or ``(issuer, jti)`` revoked, and what is the revocation epoch?
#: A token without a ``jti`` is matched through its subject only (``:t`` is then ``NULL``).
_STATUS = select(
    select(func.max(_REVOCATIONS.c.id)).scalar_subquery(),
    exists().where(
        _REVOCATIONS.c.issuer == bindparam("i"),
        or_(_REVOCATIONS.c.subject == bindparam("s"), _REVOCATIONS.c.token_id == bindparam("t")),
    ),
)
_LABELS_OF = select(_LABELS.c.label).where(
    _LABELS.c.issuer == bindparam("i"),
    _LABELS.c.subject == bindparam("s"),
    _LABELS.c.conversation_id == bindparam("c"),
)


class _Compiled:
    """A statement compiled once for one dialect, run on a raw pooled DBAPI connection.

    Every use of a trusted context reads the revocations; through a SQLAlchemy ``Connection``
    that read cost about ten times the query itself (statement caching, the transaction that
    the store's SQLite ``begin`` hook opens, result processing). Reads need none of that.
    """

    def __init__(self, statement: Select[Any], engine: Engine) -> None:
        compiled = statement.compile(dialect=engine.dialect)
        self._sql = str(compiled)
        self._order = compiled.positiontup if compiled.positional else None
        self._engine = engine
        self._errors: type[Exception] = engine.dialect.loaded_dbapi.Error

    def rows(self, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run the query with ``params``; any database error becomes :class:`StoreError`."""
        bound: Any = tuple(params[k] for k in self._order) if self._order else dict(params)
        try:
            connection = self._engine.raw_connection()
            try:
                cursor = connection.cursor()
                cursor.execute(self._sql, bound)
                result = [tuple(row) for row in cursor.fetchall()]
                cursor.close()
            finally:
                connection.close()
        except (SQLAlchemyError, self._errors) as exc:
            raise StoreError("reading the GenAI state store failed") from exc
        return result


class ConversationStore:
    """Store-backed revocations and per-conversation taint for :mod:`mamori.genai`."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], float] = time.time,
        status_lists: StatusListSource | None = None,
    ) -> None:
        """Use ``store`` (already migrated); ``exp`` and ``nbf`` are checked against ``clock``.

        ``status_lists``, when given, is a second revocation source: the IdP's OAuth Token
        Status List, read for every token that names an entry in one.
        """
        self._store = store
        self.clock = clock
        self._status_lists = status_lists
        self._status_query = _Compiled(_STATUS, store.engine)
        self._labels_query = _Compiled(_LABELS_OF, store.engine)

    @classmethod
    def ephemeral(
        cls,
        *,
        clock: Callable[[], float] = time.time,
        status_lists: StatusListSource | None = None,
    ) -> ConversationStore:
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
        state = cls(store, clock=clock, status_lists=status_lists)
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
        if revoked:
            return Liveness("principal revoked", epoch)
        return Liveness(self._status_list_refusal(ctx), epoch)

    def _status_list_refusal(self, ctx: TrustedContext) -> str:
        """Why the issuer's Token Status List refuses ``ctx`` (``""`` if it does not)."""
        if ctx.status is None or self._status_lists is None:
            return ""
        try:
            value = self._status_lists.status(ctx.status)
        except IdentityError:
            return "token status list unavailable"
        # 0x00 VALID; 0x01 INVALID, 0x02 SUSPENDED and application values all refuse.
        return "" if value == 0 else f"token status at the issuer is {value:#04x}"

    def _status(self, principal: Principal) -> tuple[int, bool]:
        (row,) = self._status_query.rows(
            {"i": principal.issuer, "s": principal.subject, "t": principal.token_id or None}
        )
        return int(row[0] or 0), bool(row[1])

    # --- conversation state ---------------------------------------------------------------
    def labels(self, principal: Principal, conversation_id: str) -> frozenset[str]:
        """The classifications released so far into this principal's conversation."""
        _check_conversation_id(conversation_id)
        rows = self._labels_query.rows(
            {"i": principal.issuer, "s": principal.subject, "c": conversation_id}
        )
        return frozenset(str(row[0]) for row in rows)

    def add_labels(
        self, principal: Principal, conversation_id: str, labels: Iterable[str], *, tool: str = ""
    ) -> None:
        """Record ``labels`` as released into the conversation (before the data is returned)."""
        new = set(labels) - self.labels(principal, conversation_id)
        if not new:
            return  # the common case: a read, no write transaction
        rows = [
            {
                "issuer": principal.issuer,
                "subject": principal.subject,
                "conversation_id": conversation_id,
                "label": label,
                "first_tool": tool[:255],
                "first_at": datetime.now(UTC),
            }
            for label in sorted(new)
        ]
        dialect = sqlite if self._store.is_sqlite else postgresql
        # Another process may have added the same label since the read: that row stays.
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
