"""One rule for untrusted text that mamori stores, compares or prints: names and subjects.

A name (an upload's ``?name=``, a multipart file name, a registry model name) or a token
subject ends up in bindings, audit records, terminals and log viewers. Characters that are
invisible or that act on the display (controls such as ESC, LF and NUL; format characters such
as zero-width spaces and bidi overrides, CVE-2021-42574 "Trojan Source"; line and paragraph
separators; unassigned and private-use code points) let one string read like another. Such a
string is *refused* wherever it enters, never silently cleaned, so that what is stored is what
the caller sent. :func:`printable` escapes whatever older records still hold when they are
printed.

"Non-printable" is :meth:`str.isprintable`: the Unicode categories Other (Cc, Cf, Co, Cn, Cs)
and Separator except the ASCII space.
"""

from __future__ import annotations

from typing import Final

from mamori.errors import ConfigError

__all__ = [
    "MAX_NAME",
    "InvalidNameError",
    "check_name",
    "name_problem",
    "printable",
    "text_problem",
]

MAX_NAME: Final = 512
"""The longest name mamori stores (binding names, file names)."""

_LATIN1_MAX: Final = 0xFF
_BMP_MAX: Final = 0xFFFF


def _escape(char: str) -> str:
    code = ord(char)
    if code <= _LATIN1_MAX:
        return f"\\x{code:02x}"
    if code <= _BMP_MAX:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character written as a Python-style escape."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def text_problem(text: str) -> str | None:
    """Why ``text`` may not be stored as an identifier, or ``None`` when it may.

    Refused: the empty string, leading or trailing whitespace (``" ivan "`` must not pass for
    ``ivan``), and any non-printable character (named by its escape, never echoed raw).
    """
    if not text:
        return "is empty"
    if text != text.strip():
        return "has leading or trailing whitespace"
    if not text.isprintable():
        bad = next(c for c in text if not c.isprintable())
        return f"holds the non-printable character {_escape(bad)}"
    return None


def name_problem(name: str, *, max_length: int = MAX_NAME) -> str | None:
    """:func:`text_problem` plus a length cap: the one rule for every name mamori stores."""
    if len(name) > max_length:
        return f"is longer than {max_length} characters"
    return text_problem(name)


class InvalidNameError(ConfigError):
    """A name breaks :func:`name_problem`'s rule (HTTP 422; nothing is stored)."""


def check_name(name: str, *, what: str = "name", max_length: int = MAX_NAME) -> str:
    """Return ``name`` if it may be stored, else raise :class:`InvalidNameError`.

    The message names ``what`` and the offending character by its escape, never raw.
    """
    problem = name_problem(name, max_length=max_length)
    if problem is not None:
        msg = f"{what} {problem}"
        raise InvalidNameError(msg)
    return name
