"""One rule for untrusted text that mamori stores, compares or prints: names and subjects.

A name (an upload's ``?name=``, a multipart file name, a registry model name) or a token
subject ends up in bindings, audit records, terminals and log viewers. Characters that are
invisible or that act on the display (controls such as ESC, LF and NUL; format characters such
as zero-width spaces and bidi overrides, CVE-2021-42574 "Trojan Source"; line and paragraph
separators; unassigned and private-use code points) let one string read like another. Such a
string is *refused* wherever it enters, never silently cleaned, so that what is stored is what
the caller sent. :func:`printable` escapes whatever older records still hold when they are
printed.

"Non-printable" is :meth:`str.isprintable` (the Unicode categories Other (Cc, Cf, Co, Cn, Cs)
and Separator except the ASCII space) plus the characters that ``isprintable`` accepts but that
render as nothing: the rest of Unicode's Default_Ignorable_Code_Point set (the combining
grapheme joiner U+034F, variation selectors, Mongolian free variation selectors, Hangul
fillers, Khmer inherent vowels) and the blank Braille pattern U+2800. ``"ivan\u034f"`` is
printable to Python yet reads exactly as ``ivan``.
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
    "visible",
]

MAX_NAME: Final = 512
"""The longest name mamori stores (binding names, file names)."""

_LATIN1_MAX: Final = 0xFF
_BMP_MAX: Final = 0xFFFF

#: Printable (to :meth:`str.isprintable`) code points that display as nothing: the letters
#: and marks of Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt;
#: its format characters are already non-printable) and the blank Braille pattern.
_INVISIBLE_RANGES: Final = (
    (0x034F, 0x034F),  # COMBINING GRAPHEME JOINER
    (0x115F, 0x1160),  # HANGUL CHOSEONG / JUNGSEONG FILLER
    (0x17B4, 0x17B5),  # KHMER VOWEL INHERENT AQ / AA
    (0x180B, 0x180F),  # MONGOLIAN FREE VARIATION SELECTORS (and VOWEL SEPARATOR)
    (0x2800, 0x2800),  # BRAILLE PATTERN BLANK
    (0x3164, 0x3164),  # HANGUL FILLER
    (0xFE00, 0xFE0F),  # VARIATION SELECTORS 1-16
    (0xFFA0, 0xFFA0),  # HALFWIDTH HANGUL FILLER
    (0xE0100, 0xE01EF),  # VARIATION SELECTORS 17-256
)


def visible(char: str) -> bool:
    """True when ``char`` is printable and shows as something (see the module docstring)."""
    if not char.isprintable():
        return False
    code = ord(char)
    return not any(low <= code <= high for low, high in _INVISIBLE_RANGES)


def _escape(char: str) -> str:
    code = ord(char)
    if code <= _LATIN1_MAX:
        return f"\\x{code:02x}"
    if code <= _BMP_MAX:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: str) -> str:
    """``text`` with every non-printable character written as a Python-style escape."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if visible(c) else _escape(c) for c in text)


def text_problem(text: str) -> str | None:
    """Why ``text`` may not be stored as an identifier, or ``None`` when it may.

    Refused: the empty string, leading or trailing whitespace (``" ivan "`` must not pass for
    ``ivan``), and any non-printable character (named by its escape, never echoed raw).
    """
    if not text:
        return "is empty"
    if text != text.strip():
        return "has leading or trailing whitespace"
    if not (text.isascii() and text.isprintable()):
        bad = next((c for c in text if not visible(c)), None)
        if bad is not None:
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
