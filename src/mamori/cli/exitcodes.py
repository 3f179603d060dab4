"""Exit codes of the ``mamori`` command line, one meaning each.

pip-audit's exit code 1 means both "vulnerabilities found" and "the tool crashed", so a CI job
cannot tell a finding from a broken run. mamori never reuses a code: a scan that could not be
carried out is 2, never 1, and never 0.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "DONE_EPILOG",
    "EXIT_CHECK_FAILED",
    "EXIT_CODE_HELP",
    "EXIT_DENIED",
    "EXIT_ERROR",
    "EXIT_MISSING_EXTRA",
    "EXIT_NOTHING_TO_CHECK",
    "EXIT_SAFE",
    "EXIT_UNSAFE",
    "STORE_EPILOG",
]

EXIT_SAFE: Final = 0
"""Every scanned path is SAFE: no unsuppressed finding at or above ``--fail-on``."""

EXIT_UNSAFE: Final = 1
"""At least one path is UNSAFE: an unsuppressed finding at or above ``--fail-on``."""

EXIT_ERROR: Final = 2
"""No verdict: usage error, missing or unreadable path, bad policy file, or an I/O error.

Click uses 2 for usage errors too, which is the same meaning ("mamori could not answer").
"""

EXIT_CHECK_FAILED: Final = EXIT_UNSAFE
"""The thing checked said no: an UNSAFE verdict (``scan``), a broken audit chain
(``audit verify``), a policy expectation that did not hold (``policy test``).

The same single meaning as :data:`EXIT_UNSAFE` ("the answer is no"), never "mamori could
not answer" (that is :data:`EXIT_ERROR`).
"""

EXIT_NOTHING_TO_CHECK: Final = 3
"""There was nothing to check, which is never a pass: ``scan`` found no file in a directory
(its report also carries the UNSAFE finding MAM-GEN-009), ``audit verify`` found no store.

modelscan exits 3 for "no supported files"; ModelAudit uses 2, which here already means error.
A CI job that accepts 0 (or 0 and 1) therefore fails on an empty checkout or a wrong path."""

EXIT_DENIED: Final = 5
"""The request was refused: the credential did not verify or the policies denied it
(``approve``, ``reject``, ``override``). Code 4 is left for the scanner's plans."""

EXIT_MISSING_EXTRA: Final = EXIT_ERROR
"""A command whose optional dependencies are not installed: the same "could not answer" as
:data:`EXIT_ERROR`, with one line naming the extra to install."""

EXIT_CODE_HELP: Final = (
    f"Exit codes: {EXIT_SAFE} = every path SAFE; "
    f"{EXIT_UNSAFE} = a finding at or above --fail-on (UNSAFE); "
    f"{EXIT_ERROR} = error (bad usage, missing or unreadable path, bad policy file, I/O error); "
    f"{EXIT_NOTHING_TO_CHECK} = nothing to scan (a directory without files; "
    f"1 wins when another path is UNSAFE)."
)
"""The exit-code table as one paragraph, for ``--help`` epilogs."""


DONE_EPILOG: Final = (
    f"Exit codes: {EXIT_SAFE} = done; {EXIT_ERROR} = error (bad usage or configuration, "
    "store or I/O error, or the command's extra is not installed: one line names it)."
)
"""The exit-code line for commands that either do their job or fail."""

STORE_EPILOG: Final = (
    f"Exit codes: {EXIT_SAFE} = done; {EXIT_ERROR} = error (bad usage or configuration, "
    f"store or I/O error, missing extra); {EXIT_NOTHING_TO_CHECK} = no store where the "
    "configuration points (none is created)."
)
"""The exit-code line for commands that read an existing store and never create one."""
