"""Keras v3 ``.keras`` archives: a zip of ``config.json``, ``metadata.json`` and weights.

``keras.saving.load_model`` reads ``config.json`` and rebuilds every object it names
(``keras/src/saving/saving_lib.py``), then loads ``model.weights.h5`` (or ``.npz``) and the
``assets/`` folder. The architecture is checked with the shared Keras walker
(:mod:`mamori.scan._internal.keras_config`); every member, including the weights, is also
scanned by content through the engine. Members Keras never writes are reported, because a
``.keras`` file is a convenient carrier for a second payload.
"""

from __future__ import annotations

from typing import ClassVar, Final

from mamori.findings import FileFormat, Location
from mamori.scan._internal.keras_config import MAX_CONFIG_BYTES, report_keras_json
from mamori.scan._internal.source import Source
from mamori.scan._internal.zipread import (
    ZipDirectory,
    ZipEntry,
    ZipMemberError,
    read_zip,
    zip_names_from_probe,
)
from mamori.scan.formats.interface import FormatHandler, LimitExceeded, Probe, ScanContext
from mamori.scan.rules import rule

__all__ = ["KERAS_MEMBERS", "KerasV3Handler"]

CONFIG: Final = "config.json"
METADATA: Final = "metadata.json"
# What keras/src/saving/saving_lib.py writes (_CONFIG_FILENAME, _METADATA_FILENAME,
# _VARS_FNAME + ".h5"/".npz", _ASSETS_DIRNAME). Anything else was added by someone else.
KERAS_MEMBERS: Final[dict[str, FileFormat | None]] = {
    CONFIG: None,  # JSON; parsed here
    METADATA: None,
    "model.weights.h5": FileFormat.HDF5,
    "model.weights.npz": FileFormat.NUMPY_NPZ,
}
_ASSETS_PREFIX: Final = "assets/"
_WEIGHTS: Final = frozenset({"model.weights.h5", "model.weights.npz"})


class KerasV3Handler(FormatHandler):
    """A zip whose members are the ones ``keras.saving.save_model`` writes."""

    format: ClassVar[FileFormat] = FileFormat.KERAS_V3
    refines: ClassVar[FileFormat | None] = FileFormat.ZIP
    needs_random_access: ClassVar[bool] = True

    def sniff(self, probe: Probe) -> bool:
        """A zip with ``config.json``, and either Keras' other members or nothing else."""
        names = zip_names_from_probe(probe)
        if not names:
            return False
        present = set(names)
        if CONFIG not in present:
            return False
        if METADATA in present or present & _WEIGHTS:
            return True
        # saving_lib._load_model_from_fileobj needs config.json and nothing else: the model is
        # rebuilt (Lambda code included) before the missing weights raise.
        return all(_expected_name(name) for name in present)

    def scan(self, source: Source, ctx: ScanContext) -> None:
        """Check the config and metadata, report foreign members, scan every member."""
        directory = read_zip(source, ctx)
        for entry in directory.entries:
            if entry.name in (CONFIG, METADATA):
                data = _read_member(directory, entry, ctx)
                if data is None:
                    continue
                report_keras_json(
                    data,
                    ctx,
                    member=(directory.label(entry),),
                    what=f"Keras {entry.name}",
                )
            elif not _expected(entry):
                ctx.emit(
                    rule("MAM-KERAS-006").finding(
                        f"member {entry.name!r} is not one Keras writes; scanned by content",
                        location=Location((*ctx.member_path, directory.label(entry))),
                        evidence=entry.name,
                    )
                )
        names = {e.name for e in directory.entries}
        if CONFIG not in names:
            ctx.report("MAM-KERAS-005", "Keras archive has no config.json")
        directory.scan_members(ctx, expected_format=lambda e: KERAS_MEMBERS.get(e.name))


def _expected(entry: ZipEntry) -> bool:
    return _expected_name(entry.name)


def _expected_name(name: str) -> bool:
    if name in KERAS_MEMBERS:
        return True
    return name.startswith(_ASSETS_PREFIX) or name.rstrip("/") == "assets"


def _read_member(directory: ZipDirectory, entry: ZipEntry, ctx: ScanContext) -> bytes | None:
    """Read a small member whole, bounded; oversize or unreadable members are findings."""
    location = Location((*ctx.member_path, entry.name))
    if entry.size > MAX_CONFIG_BYTES:
        ctx.emit(
            rule("MAM-KERAS-005").finding(
                f"{entry.name} declares {entry.size} bytes, above the "
                f"{MAX_CONFIG_BYTES}-byte limit; not parsed",
                location=location,
            )
        )
        return None
    try:
        with directory.member_source(entry, ctx).open() as stream:
            data = stream.read(MAX_CONFIG_BYTES + 1)
    except ZipMemberError:
        return None  # read_zip already reported why
    except LimitExceeded as exc:
        ctx.emit(rule(exc.rule_id).finding(exc.message, location=location))
        return None
    except (OSError, ValueError, EOFError) as exc:
        ctx.emit(
            rule("MAM-KERAS-005").finding(
                f"{entry.name} could not be read: {type(exc).__name__}: {exc}",
                location=location,
            )
        )
        return None
    return data
