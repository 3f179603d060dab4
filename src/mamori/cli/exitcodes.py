"""Exit codes of the ``mamori`` command line, one meaning each.

pip-audit's exit code 1 means both "vulnerabilities found" and "the tool crashed", so a CI job
cannot tell a finding from a broken run. mamori never reuses a code: a scan that could not be
carried out is 2, never 1, and never 0.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "EXIT_CHECK_FAILED",
    "EXIT_CODE_HELP",
    "EXIT_DENIED",
    "EXIT_ERROR",
    "EXIT_SAFE",
    "EXIT_UNSAFE",
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

EXIT_DENIED: Final = 5
"""The request was refused: the credential did not verify or the policies denied it
(``approve``, ``reject``, ``override``). Codes 3 and 4 are left for the scanner's plans."""

EXIT_CODE_HELP: Final = (
    f"Exit codes: {EXIT_SAFE} = every path SAFE; "
    f"{EXIT_UNSAFE} = a finding at or above --fail-on (UNSAFE); "
    f"{EXIT_ERROR} = error (bad usage, missing or unreadable path, bad policy file, I/O error)."
)
"""The exit-code table as one paragraph, for ``--help`` epilogs."""
