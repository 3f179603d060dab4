"""``mamori scan`` and ``mamori rules``: parse, call the library, render, map to an exit code.

Nothing here scans or decides: :func:`mamori.scan.scan_path` does the work and
:class:`~mamori.findings.ScanReport` carries the verdict. This module only turns options into
a :class:`~mamori.scan.policy.ScanPolicy`, writes the rendered report (atomically, so a failed
run never leaves half a report behind) and picks the exit code from
:mod:`mamori.cli.exitcodes`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import sys
import tempfile
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Annotated, Final, NoReturn

import typer
from rich.progress import (
    TaskID,
)

from mamori.cli._extras import install_hint, missing_extra
from mamori.cli._progress import byte_progress
from mamori.cli.exitcodes import (
    EXIT_ERROR,
    EXIT_MISSING_EXTRA,
    EXIT_NOTHING_TO_CHECK,
    EXIT_SAFE,
    EXIT_UNSAFE,
)
from mamori.errors import MamoriError
from mamori.findings import ScanReport, Severity, Verdict
from mamori.scan import ScanPolicy, scan_path
from mamori.scan.report import ReportFormat, render
from mamori.scan.report._labels import severity_label
from mamori.scan.report.text import printable
from mamori.scan.rules import RULES, RULESET_VERSION
from mamori.scan.scanner import Progress as ScanProgress

__all__ = ["rules_command", "scan_command", "scan_exit_code"]

_FORMATS = ", ".join(f.value for f in ReportFormat)
_SEVERITIES = ", ".join(s.label for s in Severity)


def _fail(message: str) -> NoReturn:
    """Print a one-line error to stderr and exit with :data:`EXIT_ERROR`."""
    sys.stderr.write(f"mamori: error: {printable(message)}\n")
    raise typer.Exit(EXIT_ERROR)


def _parse_format(value: str) -> ReportFormat:
    try:
        return ReportFormat(value.strip().lower())
    except ValueError:
        _fail(f"--format: unknown format {value!r}; expected one of: {_FORMATS}")


def _policy(policy_file: Path | None, fail_on: str | None, md5: bool) -> ScanPolicy:
    if policy_file is None:
        policy = ScanPolicy()
    else:
        # Lazy: the policy file is validated with pydantic, which a plain scan does not need.
        from mamori.scan.policy_file import load_policy  # noqa: PLC0415

        policy = load_policy(policy_file)
    if fail_on is not None:
        try:
            threshold = Severity.parse(fail_on)
        except ValueError as exc:
            _fail(f"--fail-on: {exc}")
        # --fail-on replaces the policy's threshold, so the verdict in the report and the
        # exit code always agree.
        policy = dataclasses.replace(policy, threshold=threshold)
    if md5:
        policy = dataclasses.replace(policy, md5=True)
    return policy


def _check_paths(paths: Sequence[Path | str], output: Path | None) -> None:
    """Fail fast, before any long scan, on a path that cannot be scanned or written."""
    for path in paths:
        if isinstance(path, str):
            continue  # a URL: checked when it is fetched
        try:
            path.stat()
        except OSError as exc:
            _fail(f"cannot scan {os.fspath(path)!r}: {exc.strerror or exc}")
    if output is not None:
        if output.is_dir():
            _fail(f"--output: {os.fspath(output)!r} is a directory")
        parent = output.parent
        if not parent.is_dir():
            _fail(f"--output: directory {os.fspath(parent)!r} does not exist")


def _targets(raw: Sequence[str]) -> list[Path | str]:
    """Local paths as :class:`Path`; URLs (``hf://``, ``s3://``, ...) kept as strings."""
    from mamori.remote import is_remote  # noqa: PLC0415 -- lazy: only URLs need it

    return [value if is_remote(value) else Path(value) for value in raw]


def _scan_one(target: Path | str, policy: ScanPolicy, progress: ScanProgress | None) -> ScanReport:
    if isinstance(target, Path):
        return scan_path(target, policy, progress=progress)
    from mamori.remote import fetched  # noqa: PLC0415 -- lazy: only URLs need it

    with fetched(target, progress=progress) as remote:
        report = scan_path(remote.path, policy, progress=progress)
    # The report names what the user asked for, and says exactly which bytes were scanned.
    return dataclasses.replace(report, path=remote.url, notes=(*report.notes, remote.note))


def _scan_all(targets: Sequence[Path | str], policy: ScanPolicy) -> list[ScanReport]:
    reports: list[ScanReport] = []
    with byte_progress() as progress:
        for number, target in enumerate(targets, start=1):
            label = target if isinstance(target, str) else target.name or os.fspath(target)
            prefix = f"[{number}/{len(targets)}] " if len(targets) > 1 else ""
            task = progress.add_task(f"{prefix}{printable(label)}", total=None)

            def advance(done: int, total: int | None, task: TaskID = task) -> None:
                progress.update(task, completed=done, total=total)

            reports.append(_scan_one(target, policy, None if progress.disable else advance))
            progress.remove_task(task)
    return reports


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename.

    Readers see either the old file or the complete new one, and a failure (disk full, an
    interrupt) leaves no partial report behind.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates 0600; a report is an ordinary file, so honour the umask instead.
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


@contextlib.contextmanager
def _errors_exit_2(command: str = "scan") -> Iterator[None]:
    """Map every way a run can fail to produce a verdict onto :data:`EXIT_ERROR`.

    Without this an unexpected exception (exit 1 from Python) or Ctrl-C (exit 1 from click's
    Abort) would look exactly like "UNSAFE" to a CI job.
    """
    try:
        yield
    except typer.Exit:
        raise
    except MamoriError as exc:
        _fail(exc.diagnostics())
    except OSError as exc:
        where = f" {exc.filename!r}" if exc.filename else ""
        _fail(f"I/O error{where}: {exc.strerror or exc}")
    except KeyboardInterrupt:
        _fail("interrupted; no report written")
    except ModuleNotFoundError as exc:
        # Only URLs need an extra (hf:// the [service] client, s3:// boto3, models:/ mlflow).
        extra = missing_extra(exc.name, [command])
        if extra is None:
            traceback.print_exc(file=sys.stderr)
            _fail(f"internal error: {exc}")
        sys.stderr.write(install_hint(extra, command) + "\n")
        raise typer.Exit(EXIT_MISSING_EXTRA) from None
    except Exception as exc:  # noqa: BLE001 - a crash must never exit 1 ("unsafe") or 0 ("safe")
        traceback.print_exc(file=sys.stderr)
        _fail(f"internal error: {type(exc).__name__}: {exc}")


def _print_version(value: bool) -> None:
    if not value:
        return
    from mamori import __version__  # noqa: PLC0415 - only for --version
    from mamori.scan.pickle.hot import SCANNER_BUILD  # noqa: PLC0415 - idem

    typer.echo(
        f"mamori {__version__} (ruleset {RULESET_VERSION}; pickle hot loop: {SCANNER_BUILD})"
    )
    raise typer.Exit(EXIT_SAFE)


def scan_command(
    paths: Annotated[
        list[str],
        typer.Argument(
            help="Files or directories to scan (a directory is one artifact), or URLs fetched "
            "into a temporary quarantine: hf://org/repo[@rev], models:/NAME@ALIAS, "
            "s3://bucket/key (or prefix/), https://...",
            show_default=False,
        ),
    ],
    *,
    format_: Annotated[
        str, typer.Option("--format", "-f", help=f"Report format: {_FORMATS}.")
    ] = "text",
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Write the report to this file instead of stdout.",
            show_default=False,
        ),
    ] = None,
    fail_on: Annotated[
        str | None,
        typer.Option(
            "--fail-on",
            help=f"Exit 1 when a finding is at or above this severity ({_SEVERITIES}); "
            "overrides the policy threshold. Default: the policy's threshold (medium).",
            show_default=False,
        ),
    ] = None,
    policy_file: Annotated[
        Path | None,
        typer.Option(
            "--policy",
            help="TOML policy file (threshold, globals, suppressions, limits).",
            show_default=False,
        ),
    ] = None,
    md5: Annotated[
        bool, typer.Option("--md5", help="Also compute MD5 digests (SHA-256 always).")
    ] = False,
    version: Annotated[  # noqa: ARG001 - handled eagerly by the callback
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the scanner and ruleset versions and which pickle hot loop runs.",
        ),
    ] = False,
) -> None:
    """Scan model files without loading them and report what is unsafe."""
    with _errors_exit_2():
        fmt = _parse_format(format_)
        policy = _policy(policy_file, fail_on, md5)
        targets = _targets(paths)
        _check_paths(targets, output)
        reports = _scan_all(targets, policy)
        color = output is None and sys.stdout.isatty() and not os.environ.get("NO_COLOR")
        text = render(reports, fmt, color=color, base_dir=Path.cwd())
        if output is None:
            if isinstance(sys.stdout, io.TextIOWrapper):
                # A terminal or pipe in a non-UTF-8 locale must not turn a member name it
                # cannot encode into a crash (exit 2) after a successful scan.
                sys.stdout.reconfigure(errors="backslashreplace")
            sys.stdout.write(text)
            sys.stdout.flush()
        else:
            _write_atomic(output, text)
    raise typer.Exit(scan_exit_code(reports))


def scan_exit_code(reports: Sequence[ScanReport]) -> int:
    """0 when every path is SAFE; 1 when one is UNSAFE; 3 when the only "no" is emptiness.

    An empty directory is UNSAFE (MAM-GEN-009) in every report; its own exit code lets CI
    tell "wrong path or empty checkout" from "malicious model".
    """
    unsafe = [r for r in reports if r.verdict is Verdict.UNSAFE]
    if not unsafe:
        return EXIT_SAFE
    if all({f.rule_id for f in r.findings} == {_NOTHING_SCANNED} for r in unsafe):
        return EXIT_NOTHING_TO_CHECK
    return EXIT_UNSAFE


_NOTHING_SCANNED: Final = "MAM-GEN-009"


def rules_command(
    format_: Annotated[
        str, typer.Option("--format", "-f", help="Output format: text or json.")
    ] = "text",
) -> None:
    """List the rule catalogue: id, default severity, title, CWE and MITRE ATLAS ids."""
    value = format_.strip().lower()
    entries = sorted(RULES.values(), key=lambda r: r.id)
    if value == "json":
        document = {
            "ruleset_version": RULESET_VERSION,
            "rules": [
                {
                    "id": r.id,
                    "severity": severity_label(r.severity),
                    "title": r.title,
                    "cwe": list(r.cwe),
                    "atlas": list(r.atlas),
                    "description": r.description,
                }
                for r in entries
            ],
        }
        sys.stdout.write(json.dumps(document, indent=2) + "\n")
    elif value == "text":
        lines = [f"mamori ruleset {RULESET_VERSION}: {len(entries)} rules"]
        lines += [
            f"{r.id:<12} {severity_label(r.severity):<8} {r.title}  "
            f"[{', '.join(r.cwe) or '-'}; {', '.join(r.atlas) or '-'}]"
            for r in entries
        ]
        sys.stdout.write("\n".join(lines) + "\n")
    else:
        _fail(f"--format: unknown format {format_!r}; expected one of: text, json")
    raise typer.Exit(EXIT_SAFE)
