"""Checks on archive member names shared by the zip, tar and 7z readers.

A member name is data the archive author controls. Extractors differ on how they treat ``..``,
absolute paths, drive letters and backslashes (CVE-2007-4559 for ``tarfile``, "Zip Slip" for
many zip libraries), so every such name is reported, whatever the scanner does with it.
"""

from __future__ import annotations

import posixpath
import re
from typing import Final

from mamori.scan._internal.context import ScanContext

__all__ = ["check_member_name", "link_target_escapes", "normalise_member_name"]

_DRIVE: Final = re.compile(r"^[A-Za-z]:")
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


def normalise_member_name(name: str) -> str:
    """Return the key under which extractors on any platform would store ``name``.

    Backslashes become slashes (Windows extractors treat them as separators), ``.`` segments
    and repeated slashes disappear, and case is folded (case-insensitive file systems).
    """
    parts = [p for p in name.replace("\\", "/").split("/") if p not in {"", "."}]
    return "/".join(parts).casefold()


def check_member_name(
    name: str, ctx: ScanContext, *, offset: int | None = None, name_rule: str = "MAM-ZIP-010"
) -> None:
    """Report traversal, absolute paths and odd characters in one member name.

    ``name_rule`` is the rule for NUL/control characters and backslashes (the zip rule by
    default; tar and 7z pass their own archive-level rule).
    """
    shown = repr(name)
    if _CONTROL.search(name):
        ctx.report(
            name_rule,
            "member name contains NUL or control characters",
            offset=offset,
            evidence=shown,
        )
    if "\\" in name:
        ctx.report(
            name_rule,
            "member name contains a backslash, a path separator on Windows",
            offset=offset,
            evidence=shown,
        )
    unified = name.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        ctx.report("MAM-ARC-002", "member name is an absolute path", offset=offset, evidence=shown)
    if ".." in unified.split("/"):
        ctx.report(
            "MAM-ARC-001",
            "member name climbs out of the extraction directory",
            offset=offset,
            evidence=shown,
        )


def link_target_escapes(member_name: str, target: str, *, hard: bool = False) -> bool:
    """True when a link named ``member_name`` pointing to ``target`` leaves the archive root.

    Symbolic link targets are relative to the link's directory; hard link targets (tar) are
    relative to the archive root. Absolute targets always escape.
    """
    unified = target.replace("\\", "/")
    if unified.startswith("/") or _DRIVE.match(unified):
        return True
    base = "" if hard else posixpath.dirname(member_name.replace("\\", "/"))
    depth = 0
    for part in posixpath.join(base, unified).split("/"):
        if part in {"", "."}:
            continue
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        else:
            depth += 1
    return False
