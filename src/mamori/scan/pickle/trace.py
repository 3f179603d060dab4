"""What an interpretation records: events (future findings) and the trace of global uses."""

from __future__ import annotations

from dataclasses import dataclass, field

from mamori.scan.pickle.uses import UseKind
from mamori.scan.pickle.values import GlobalRef, Value

__all__ = ["Event", "Malformed", "Trace"]


class Malformed(Exception):  # noqa: N818 - internal control flow, never escapes the analyser
    """The stream breaks here; the real loader would raise at this opcode."""

    def __init__(self, rule_id: str, message: str, offset: int) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.message = message
        self.offset = offset


@dataclass(frozen=True, slots=True)
class Event:
    """Something the interpreter noticed, to become a finding of catalogue rule ``rule_id``."""

    rule_id: str
    message: str
    offset: int
    evidence: str | None = None


@dataclass(slots=True)
class Trace:
    """What one interpretation produced (mutable while the interpreter runs)."""

    uses: dict[tuple[GlobalRef, UseKind], list[int]] = field(default_factory=dict)
    """(global, use) -> [first offset, count]."""
    events: list[Event] = field(default_factory=list)
    persistent_ids: list[Value] = field(default_factory=list)
    nested: list[tuple[bytes, int]] = field(default_factory=list)
    """Literal bytes passed to a pickle loader, with their offset, for recursive analysis."""
    embedded: list[tuple[bytes, int]] = field(default_factory=list)
    """Literal bytes given to ``torch.storage._load_from_bytes``: whole torch files, scanned
    by content as children (``pickle.dumps(tensor)`` writes them)."""
    root: Value = None
    pure: bool = True
    complete: bool = False
    end: int = 0
    opcodes: int = 0
    protocol: int = 0

    def use(self, ref: GlobalRef, kind: UseKind, offset: int) -> None:
        """Record one use of ``ref``."""
        slot = self.uses.get((ref, kind))
        if slot is None:
            self.uses[ref, kind] = [offset, 1]
        else:
            slot[1] += 1
