"""Raw pickle files (``pickle.dump`` output, ``.pkl``): detection and analysis.

Detection is by content, never by name or by what follows the pickle. Protocol 2+ pickles
start with PROTO (``0x80`` and a protocol byte); protocol 0/1 pickles have no magic, so the
head is interpreted symbolically and claimed when

* it reaches STOP after at least two opcodes and either ends the file or imports a global,
  whatever bytes follow (``pickle.load`` stops at STOP and never looks further; the bytes
  after it are analysed as trailing data), or
* it runs out of bytes without another error (a pickle longer than the probe) and imports a
  global or the file ends with STOP, or
* it breaks, but only after calling a well-formed global or importing a standard-library one:
  the loader ran it before the error, the "broken pickle" trick.
"""

from __future__ import annotations

import io
import re
import sys
from typing import Final

from mamori.findings import FileFormat, Finding
from mamori.scan._internal.scoped_context import MemberContext
from mamori.scan._internal.source import Source
from mamori.scan.formats.interface import FormatHandler, Probe, ScanContext
from mamori.scan.formats.joblib import WRAPPER_DOTTED, scan_joblib
from mamori.scan.pickle import UseKind, analyse_stream
from mamori.scan.pickle.machine import HIGHEST_PROTOCOL, Machine
from mamori.scan.pickle.reader import Window

__all__ = ["PickleHandler", "rejected_at_first_opcode"]

_MIN_OPCODES: Final = 2
# The analyser starts a global's finding with its dotted name (scan/pickle/__init__.py, _emit).
_WRAPPER_DENIED: Final = f"{WRAPPER_DOTTED}: "


class PickleHandler(FormatHandler):
    """FileFormat.PICKLE: every stacked pickle in the file is analysed."""

    format = FileFormat.PICKLE
    # The fast path re-reads skipped runs by seeking when something needs their values, so a
    # one-shot stream (a decompressor) is spooled first; otherwise only the slower
    # per-opcode path could be used.
    needs_random_access = True

    def sniff(self, probe: Probe) -> bool:
        """Claim PROTO-headed streams, and protocol 0/1 streams whose head parses cleanly."""
        head = probe.head
        if len(head) < 2:  # noqa: PLR2004 - PROTO plus its argument
            return False
        if head[0] == 0x80:  # noqa: PLR2004 - PROTO opcode
            # Protocols 0-5 are claimed outright (a broken body is a finding). A higher
            # protocol byte is claimed only when an opcode follows: 0x80 alone is too common
            # in binary data.
            return head[1] <= HIGHEST_PROTOCOL or len(head) == 2 or head[2] in _OPCODE_BYTES  # noqa: PLR2004
        return _parses(head, probe.tail, probe.size)

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Analyse every pickle in the source; defer to joblib's reading when it is a dump.

        The joblib handler claims dumps that name ``joblib.numpy_pickle`` in their first
        64 KiB. A dump whose first array comes later (a large first entry) lands here, and
        read as a plain pickle its inline array bytes are garbage opcodes. So the analyser's
        findings are held back, with the array wrapper denied for this pass so that any use
        of it is reported whatever the policy allows: no use, and the findings are passed on
        unchanged; a use, and they are dropped and the file is read again the way
        ``joblib.load`` reads it (the one case that pays for two passes).
        """
        held: list[Finding] = []

        def hold(finding: Finding) -> bool:
            held.append(finding)
            return True

        watch = MemberContext(ctx, None, extra_denied=frozenset({WRAPPER_DOTTED}), drop=hold)
        try:
            with source.open() as stream:
                analyse_stream(stream, watch)
        except BaseException:
            # A limit or the deadline ended the pass: what was found so far still counts.
            for finding in held:
                ctx.emit(finding)
            raise
        if any(f.message.startswith(_WRAPPER_DENIED) for f in held):
            ctx.refine_format(FileFormat.JOBLIB)
            scan_joblib(source, ctx)
            return
        for finding in held:
            ctx.emit(finding)


def _parses(head: bytes, tail: bytes | None, size: int | None) -> bool:
    """True when ``head`` is the start of a pickle a loader would run (see the docstring).

    Data that merely reads as a few opcodes is common in binary files (about one random
    4 KiB block in 500 reaches a STOP), so bytes after STOP, or a head cut before it, need a
    global as evidence: a pickle without one builds plain data, imports and calls nothing,
    and loading it runs nothing whatever follows.
    """
    machine = Machine(
        Window(io.BytesIO(head), 0, exact=False),
        max_opcodes=1 << 20,
        deadline=lambda: None,
        is_loader=lambda _ref: False,
    )
    trace = machine.run()
    named = [(ref, kind) for ref, kind in trace.uses if _well_formed(ref.module, ref.name)]
    if trace.complete:
        ends_file = size is not None and trace.end >= size
        return trace.opcodes >= _MIN_OPCODES and (ends_file or bool(named))
    if any(
        kind is not UseKind.REFERENCED or ref.module.split(".")[0] in sys.stdlib_module_names
        for ref, kind in named
    ):
        # The loader called a real global, or imported a standard-library one, before the
        # stream broke (the "broken pickle" trick). Text whose first lines merely read as a
        # GLOBAL of no real module ("cat\ndog\n" in a word list) runs nothing.
        return True
    cut = size is None or size > len(head)
    if not cut or len(trace.events) != 1 or trace.opcodes < _MIN_OPCODES:
        return False
    # The head was cut: accept when the sole problem is running out of bytes, and the pickle
    # imports something or the file ends the way a pickle ends.
    message = trace.events[0].message
    running_out = "truncated" in message or "without STOP" in message
    return running_out and (bool(named) or (tail is not None and tail.endswith(b".")))


def _well_formed(module: str, name: str) -> bool:
    return bool(_IDENTIFIER.fullmatch(module) and _IDENTIFIER.fullmatch(name))


def rejected_at_first_opcode(head: bytes) -> bool:
    """True when ``pickle.load`` fails on the very first opcode of ``head``.

    Such bytes import and call nothing under any pickle-based loader (``pickle.load``, and
    ``torch.load``, ``joblib.load``, ``numpy.load`` once they fall back to it). Only the first
    opcode is trusted: it is a byte that is no opcode, or an opcode whose own argument does
    not decode, where CPython's unpickler and this interpreter cannot disagree about what ran
    before the error.
    """
    if not head or head.startswith(_PNG):
        return True
    machine = Machine(
        Window(io.BytesIO(head), 0, exact=False),
        max_opcodes=2,
        deadline=lambda: None,
        is_loader=lambda _ref: False,
    )
    trace = machine.run()
    if trace.complete or trace.uses or trace.opcodes > 1 or len(trace.events) != 1:
        return False
    message = trace.events[0].message
    return "truncated" not in message and "without STOP" not in message


# An image saved under a model name (picklescan's bad_pytorch.pt). Its signature reads as
# NEWFALSE, then PERSID "NG\r": pickle.load has no persistent_load and stops, torch's legacy
# persistent_load rejects the id type "N"; nothing is imported or called either way.
_PNG: Final = b"\x89PNG\r\n\x1a\n"
_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


_OPCODE_BYTES: Final = frozenset(
    b"IJKMLSTUBCNVXFG]ael)t}dsu01(2ghjpqrcRbio.PQ" + bytes(range(0x80, 0x99))
)
