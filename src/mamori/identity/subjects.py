r"""Subjects: which ``sub`` values are accepted, and when two principals are one person.

A principal is ``(issuer, subject)``. A subject is refused at verification when it holds
controls, format characters (zero-width, bidi) or other non-printable characters, or leading
or trailing whitespace (:func:`mamori.text.text_problem`): ``"ivan\u200b"`` and ``" ivan "``
must never authenticate as something that reads like ``ivan``.

Separation of duties ("four eyes") compares :meth:`SubjectRules.person` keys, not raw
strings: under one issuer, subjects that are equal after NFKC normalisation and case folding
(``ivan``, ``Ivan``, the fullwidth ``\uff49\uff56\uff41\uff4e``) are the same person. An
issuer whose ids are case-sensitive (e.g. opaque ids such as Okta's ``00u1aB…``) is listed in
``case_sensitive_issuers``: its subjects are only NFKC-normalised. Subjects of different
issuers are always different people.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

from mamori.errors import IdentityError
from mamori.text import text_problem, visible

__all__ = ["SubjectRules", "check_subject"]

_MAX_SUBJECT = 255


def check_subject(subject: object) -> str:
    """Return ``subject`` if it is an acceptable ``sub`` claim, else raise IdentityError."""
    if not isinstance(subject, str):
        raise IdentityError("sub must be a string")
    if len(subject) > _MAX_SUBJECT:
        msg = f"sub is longer than {_MAX_SUBJECT} characters"
        raise IdentityError(msg)
    problem = text_problem(subject)
    if problem is not None:
        msg = f"sub {problem}; refused"
        raise IdentityError(msg)
    return subject


def _fold(text: str) -> str:
    # NFKC_Casefold as Unicode defines it (UAX #44): casefold can leave text that NFKC
    # changes again (e.g. U+0345), so normalise on both sides.
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", text).casefold())


@dataclass(frozen=True, slots=True)
class SubjectRules:
    """How subjects of each issuer compare for "same person" decisions."""

    case_sensitive_issuers: frozenset[str] = frozenset()

    def person(self, issuer: str, subject: str) -> str:
        """The key under which ``(issuer, subject)`` is one person: ``issuer|folded subject``.

        Characters that can never appear in a verified subject (non-printables, surrounding
        whitespace) are dropped here too, so records made before subjects were checked
        (or by a path that does not check) still compare as the person they read as.
        """
        cleaned = "".join(c for c in subject if visible(c)).strip()
        if issuer in self.case_sensitive_issuers:
            key = unicodedata.normalize("NFKC", cleaned)
        else:
            key = _fold(cleaned)
        return f"{issuer}|{key}"

    def same_person(self, a: tuple[str, str], b: tuple[str, str]) -> bool:
        """True when the ``(issuer, subject)`` pairs ``a`` and ``b`` are one person."""
        return self.person(*a) == self.person(*b)
