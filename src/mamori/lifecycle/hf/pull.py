"""``pull``: a quarantined Hugging Face download, scanned before anything may load it.

1. Authorize the import (Cedar ``import``), resolve the revision to a commit sha and list the
   tree at that sha (sizes, git blob ids, LFS sha256) before downloading anything.
2. Apply the pre-download policy (:mod:`mamori.lifecycle.hf.policy`): file types, sizes, paths;
   then fetch the small ``*config.json`` files and refuse ``auto_map`` remote code unless it
   was allowed at a pinned commit.
3. Download into ``<data_dir>/quarantine/<org>/<name>/<sha>/files`` and verify every file
   against the tree (size, LFS sha256 or git blob id).
4. Store each file in the content-addressed :class:`~mamori.lifecycle.BlobStore`, bind it as
   ``hf:<org>/<name>@<sha>:<path>`` and scan it through :meth:`Lifecycle.run_scan`.
5. Only when every file is SAFE, release into the HF cache (:mod:`mamori.lifecycle.hf.cache`).

SAFE is enough to *release into the local cache*: that lets this machine's tools load the
files. Deploying them is a separate decision: the deployment gate still wants an APPROVED
digest (:meth:`Lifecycle.gate_binding` on ``("hf", repo, sha)``). Anything refused or UNSAFE
stays in quarantine with ``pull.json`` (what was decided and why) and ``report.json``.
"""

from __future__ import annotations

import contextlib
import enum
import json
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from sqlalchemy import select

from mamori.config import Settings
from mamori.errors import RegistryError
from mamori.findings import Severity, Verdict
from mamori.identity.principal import Principal
from mamori.lifecycle.authz import Action
from mamori.lifecycle.blobs import StoredBlob
from mamori.lifecycle.hf.cache import ReleasedFile, release
from mamori.lifecycle.hf.client import DownloadRefusedError, HubClient, git_blob_oid
from mamori.lifecycle.hf.policy import (
    FileKind,
    PullPolicy,
    TreeEntry,
    classify,
    is_commit_sha,
    path_problem,
    remote_code_modules,
    repo_id_problem,
    revision_problem,
)
from mamori.lifecycle.hf.report import stored_report, write_json, write_report
from mamori.lifecycle.service import Lifecycle
from mamori.scan.report.schema import FileReport
from mamori.store.db import audit_append
from mamori.store.models import ArtifactRow, ArtifactState, BindingRow, ScanStatus

__all__ = ["SOURCE", "FileStatus", "PullOutcome", "PullResult", "PulledFile", "pull"]

SOURCE: Final = "hf"
"""The binding ``source`` of pulled files: ``(hf, <org>/<name>, <commit sha>, <path>)``."""

_MAX_CONFIG_BYTES: Final = 16 << 20
_SCAN_WAIT_SECONDS: Final = 600.0


class PullOutcome(enum.StrEnum):
    """What became of a pull."""

    RELEASED = "released"
    """Every file verified and SAFE: released into the HF cache."""
    QUARANTINED = "quarantined"
    """Every file verified and scanned, at least one UNSAFE (or its scan failed): kept."""
    REFUSED = "refused"
    """The policy or an integrity check said no; nothing was scanned or released."""


class FileStatus(enum.StrEnum):
    """What became of one file of the tree."""

    SAFE = "safe"
    UNSAFE = "unsafe"
    """Scanned UNSAFE, or its scan failed or did not finish (fail closed)."""
    REFUSED = "refused"
    """Refused by the pre-download policy or an integrity check (see the reason)."""
    EXCLUDED = "excluded"
    """Left out by the ``exclude`` globs: never downloaded, never released."""
    NOT_DOWNLOADED = "not-downloaded"
    """Allowed, but the pull was refused before it was fetched."""
    VERIFIED = "verified"
    """Downloaded and verified; not scanned because the pull was refused afterwards."""


@dataclass(frozen=True, slots=True)
class PulledFile:
    """One file of the tree at the pulled commit."""

    path: str
    size: int
    git_oid: str
    lfs_sha256: str | None
    status: FileStatus
    sha256: str | None = None
    """SHA-256 of the verified bytes (equal to ``lfs_sha256`` for LFS files)."""
    reason: str = ""


@dataclass(frozen=True, slots=True)
class PullResult:
    """The answer of :func:`pull`.

    Attributes:
        repo_id: ``org/name``.
        revision: what was asked for (a branch, tag or commit sha).
        commit: the 40-hex commit sha the revision resolved to.
        outcome: released, quarantined or refused.
        files: every file of the tree, in tree order, with its status.
        reasons: why the pull was not released (empty when released).
        quarantine_dir: ``<data_dir>/quarantine/<org>/<name>/<commit>``.
        manifest_path: ``pull.json`` in the quarantine directory (this result as JSON).
        report_path: ``report.json`` (scan reports of every scanned file), or ``None``.
        snapshot_dir: the released ``snapshots/<commit>`` directory, or ``None``.
        removed: unscanned entries found in that directory and removed before release.
    """

    repo_id: str
    revision: str
    commit: str
    outcome: PullOutcome
    files: tuple[PulledFile, ...]
    reasons: tuple[str, ...]
    quarantine_dir: Path
    manifest_path: Path
    report_path: Path | None = None
    snapshot_dir: Path | None = None
    removed: tuple[str, ...] = ()
    """Entries of the snapshot directory that were not scanned files, removed on release."""

    @property
    def released(self) -> bool:
        """True when the files are in the HF cache."""
        return self.outcome is PullOutcome.RELEASED

    @property
    def uri(self) -> str:
        """``hf://org/name@<commit>``: what the bindings record."""
        return f"hf://{self.repo_id}@{self.commit}"

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (``pull.json`` and ``mamori pull --format json``)."""
        return {
            "uri": self.uri,
            "repo_id": self.repo_id,
            "revision": self.revision,
            "commit": self.commit,
            "outcome": self.outcome.value,
            "released": self.released,
            "reasons": list(self.reasons),
            "quarantine_dir": str(self.quarantine_dir),
            "report_path": None if self.report_path is None else str(self.report_path),
            "snapshot_dir": None if self.snapshot_dir is None else str(self.snapshot_dir),
            "removed": list(self.removed),
            "files": [
                {
                    "path": f.path,
                    "size": f.size,
                    "git_oid": f.git_oid,
                    "lfs_sha256": f.lfs_sha256,
                    "sha256": f.sha256,
                    "status": f.status.value,
                    "reason": f.reason,
                }
                for f in self.files
            ],
        }


@dataclass
class _State:
    """The mutable bookkeeping of one pull; frozen into a :class:`PullResult` at the end."""

    tree: tuple[TreeEntry, ...]
    status: dict[str, FileStatus] = field(default_factory=dict)
    reason: dict[str, str] = field(default_factory=dict)
    sha256: dict[str, str] = field(default_factory=dict)
    local: dict[str, Path] = field(default_factory=dict)
    reasons: list[str] = field(default_factory=list)

    def refuse(self, path: str, why: str) -> None:
        self.status[path] = FileStatus.REFUSED
        self.reason[path] = why
        self.reasons.append(f"{path}: {why}")

    def wanted(self) -> list[TreeEntry]:
        return [e for e in self.tree if self.status[e.path] is FileStatus.NOT_DOWNLOADED]

    def files(self) -> tuple[PulledFile, ...]:
        return tuple(
            PulledFile(
                path=e.path,
                size=e.size,
                git_oid=e.git_oid,
                lfs_sha256=e.lfs_sha256,
                status=self.status[e.path],
                sha256=self.sha256.get(e.path),
                reason=self.reason.get(e.path, ""),
            )
            for e in self.tree
        )


@dataclass(frozen=True, slots=True)
class _Job:
    """Who pulls what, and where it goes."""

    lifecycle: Lifecycle
    principal: Principal
    settings: Settings
    repo_id: str
    revision: str
    commit: str
    accepted_rules: frozenset[str] = frozenset()
    """Findings the operator accepted for this pull (remote code they explicitly allowed)."""

    @property
    def qdir(self) -> Path:
        return self.settings.data_dir / "quarantine" / self.repo_id / self.commit


def pull(
    lifecycle: Lifecycle,
    principal: Principal,
    repo_id: str,
    revision: str = "main",
    *,
    settings: Settings,
    policy: PullPolicy | None = None,
    client: HubClient | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PullResult:
    """Pull ``repo_id@revision`` through quarantine and scanning; release only if SAFE.

    ``progress(done, total)`` is called with the bytes downloaded so far and the total the
    tree lists for the files to download (a progress display; it never changes the result).

    Raises :class:`~mamori.errors.AccessDeniedError` when the principal may not import,
    :class:`~mamori.errors.RegistryError` when the hub cannot be read (an answer mamori could
    not get, as opposed to a refusal, which is a :class:`PullResult`).
    """
    problem = repo_id_problem(repo_id) or revision_problem(revision)
    if problem is not None:
        raise RegistryError(problem)
    lifecycle._authorize(  # noqa: SLF001 - the lifecycle's own audited Cedar check, as import_file
        principal, Action.IMPORT, None, reason=f"hf pull {repo_id}@{revision}"
    )
    policy = policy or PullPolicy.from_settings(settings)
    with contextlib.ExitStack() as stack:
        hub = client or stack.enter_context(_client(settings))
        commit = hub.resolve_commit(repo_id, revision)
        # Remote code allowed at a pinned commit was the operator's explicit choice: the
        # auto_map finding it causes must not block the release into the local cache. The
        # stored verdict stays UNSAFE, so deployment still needs an approval override.
        accepted = (
            frozenset({"MAM-JSON-001"})
            if _code_refusal(policy, revision) is None and policy.allow_remote_code
            else frozenset()
        )
        job = _Job(lifecycle, principal, settings, repo_id, revision, commit, accepted)
        state = _State(hub.list_tree(repo_id, commit, max_files=policy.max_files))
        _apply_static_policy(state, policy, revision)
        if not state.reasons:
            _reuse_quarantined(job, state)
            _fetch(hub, job, state, _configs(state), None)
        if not state.reasons:
            _apply_code_policy(state, policy, revision)
        if not state.reasons:
            wanted = state.wanted()
            _fetch(hub, job, state, wanted, _meter(progress, sum(e.size for e in wanted)))
    result = _scan_and_release(job, state)
    _audit(lifecycle, principal, result)
    return result


@contextlib.contextmanager
def _client(settings: Settings) -> Iterator[HubClient]:
    token = settings.hf_token.get_secret_value() if settings.hf_token is not None else None
    with HubClient(
        settings.hf_endpoint,
        token=token,
        redirect_hosts=settings.hf_redirect_hosts,
        timeout=settings.hf_timeout_seconds,
    ) as hub:
        yield hub


# --- policy ----------------------------------------------------------------------------------


def _apply_static_policy(state: _State, policy: PullPolicy, revision: str) -> None:
    """Paths, file types and sizes: decided from the listing alone, before any download."""
    if not state.tree:
        state.reasons.append("the tree lists no files")
    total = 0
    seen: set[str] = set()
    # A path that is also a directory of another path cannot exist on disk (nor in git).
    folders = {
        e.path.rsplit("/", i)[0] for e in state.tree for i in range(1, e.path.count("/") + 1)
    }
    for entry in state.tree:
        state.status[entry.path] = FileStatus.NOT_DOWNLOADED
        if entry.path in seen:
            state.refuse(entry.path, "listed twice in the tree")
        elif entry.path in folders:
            state.refuse(entry.path, "listed both as a file and as a directory")
        seen.add(entry.path)
        kind, why = _entry_refusal(entry, policy, revision)
        if kind is FileKind.EXCLUDED:
            state.status[entry.path] = FileStatus.EXCLUDED
            state.reason[entry.path] = "excluded by the operator"
            continue
        total += entry.size
        if why is not None:
            state.refuse(entry.path, why)
    if state.tree and FileStatus.NOT_DOWNLOADED not in state.status.values():
        state.reasons.append("no file of the tree is left to pull")
    if total > policy.max_total_bytes:
        state.reasons.append(
            f"the repo totals {total} bytes, over the {policy.max_total_bytes}-byte limit"
        )


def _entry_refusal(
    entry: TreeEntry, policy: PullPolicy, revision: str
) -> tuple[FileKind | None, str | None]:
    """(kind, why it is refused) of one listed file; the kind is None for an unsafe path."""
    bad_path = path_problem(entry.path)
    if bad_path is not None:
        return None, f"unsafe tree path: {bad_path}"
    kind = classify(entry.path, policy)
    if kind is FileKind.EXCLUDED:
        return kind, None
    if kind is FileKind.DISALLOWED:
        return kind, "file type not on the pull allowlist (exclude it to skip it)"
    if kind is FileKind.CODE and (why := _code_refusal(policy, revision)) is not None:
        return kind, f"python code: {why}"
    if entry.size > policy.max_file_bytes:
        return kind, f"{entry.size} bytes exceeds the {policy.max_file_bytes}-byte file limit"
    return kind, None


def _code_refusal(policy: PullPolicy, revision: str) -> str | None:
    if not policy.allow_remote_code:
        return "remote code (trust_remote_code) is refused unless explicitly allowed"
    if not is_commit_sha(revision):
        return f"remote code is only pulled at a pinned 40-hex commit sha, not {revision!r}"
    return None


def _configs(state: _State) -> list[TreeEntry]:
    return [
        e
        for e in state.wanted()
        if (name := e.path.rsplit("/", 1)[-1]) == "config.json" or name.endswith("_config.json")
    ]


def _apply_code_policy(state: _State, policy: PullPolicy, revision: str) -> None:
    """Refuse ``auto_map`` remote code unless allowed, pinned and present in this tree."""
    paths = {e.path for e in state.tree}
    for entry in _configs_fetched(state):
        if entry.size > _MAX_CONFIG_BYTES:
            state.refuse(entry.path, "config too large to check for auto_map")
            continue
        try:
            config = json.loads(state.local[entry.path].read_bytes())
        except (OSError, ValueError) as exc:
            state.refuse(entry.path, f"cannot read it to check for auto_map: {exc}")
            continue
        local, foreign = remote_code_modules(config)
        if foreign:
            state.refuse(entry.path, f"auto_map names code outside this repo: {', '.join(foreign)}")
        if not local:
            continue
        why = _code_refusal(policy, revision)
        if why is not None:
            state.refuse(entry.path, f"auto_map names {', '.join(local)}: {why}")
            continue
        base = entry.path.rsplit("/", 1)[0] + "/" if "/" in entry.path else ""
        missing = [m for m in local if base + m not in paths]
        if missing:
            state.refuse(entry.path, f"auto_map names {', '.join(missing)}, absent from the tree")


def _configs_fetched(state: _State) -> list[TreeEntry]:
    return [
        e
        for e in state.tree
        if e.path in state.local
        and ((name := e.path.rsplit("/", 1)[-1]) == "config.json" or name.endswith("_config.json"))
    ]


# --- download --------------------------------------------------------------------------------


def _reuse_quarantined(job: _Job, state: _State) -> None:
    """Files an earlier pull of this commit already verified into the blob store."""
    with job.lifecycle.store.read() as session:
        bound = dict(
            session.execute(
                select(BindingRow.member_path, ArtifactRow.sha256)
                .join(ArtifactRow, BindingRow.artifact_id == ArtifactRow.id)
                .where(
                    BindingRow.source == SOURCE,
                    BindingRow.name == job.repo_id,
                    BindingRow.version == job.commit,
                )
            ).all()
        )
    for entry in state.wanted():
        candidate = entry.lfs_sha256 or bound.get(entry.path)
        blob = None if candidate is None else job.lifecycle.blobs.get(candidate)
        if blob is None or blob.size != entry.size:
            continue
        # The blob store names LFS bytes by the sha256 it computed itself; git-stored files
        # are small, so their git blob id is simply recomputed.
        if entry.lfs_sha256 is None and git_blob_oid(blob.path) != entry.git_oid:
            continue
        state.status[entry.path] = FileStatus.VERIFIED
        state.sha256[entry.path] = blob.sha256
        state.local[entry.path] = blob.path


def _meter(progress: Callable[[int, int], None] | None, total: int) -> Callable[[int], None] | None:
    """A per-chunk callback that reports the running byte count to ``progress``."""
    if progress is None:
        return None
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        progress(done, total)

    return advance


def _fetch(
    hub: HubClient,
    job: _Job,
    state: _State,
    entries: Iterable[TreeEntry],
    on_bytes: Callable[[int], None] | None,
) -> None:
    files = job.qdir / "files"
    for entry in entries:
        if state.status[entry.path] is not FileStatus.NOT_DOWNLOADED:
            continue
        dest = files / entry.path
        try:
            sha256 = hub.download(job.repo_id, job.commit, entry, dest, on_bytes=on_bytes)
        except DownloadRefusedError as exc:
            state.refuse(entry.path, exc.diagnostics())
            return
        state.status[entry.path] = FileStatus.VERIFIED
        state.sha256[entry.path] = sha256
        state.local[entry.path] = dest


# --- scan, report, release -------------------------------------------------------------------


def _scan_and_release(job: _Job, state: _State) -> PullResult:
    lifecycle, qdir = job.lifecycle, job.qdir
    qdir.mkdir(parents=True, exist_ok=True)
    reports: list[FileReport] = []
    released: list[ReleasedFile] = []
    if not state.reasons:
        for entry in state.tree:
            if state.status[entry.path] is not FileStatus.VERIFIED:
                continue
            blob = _store(lifecycle, entry, state)
            lifecycle.register(
                job.principal,
                blob,
                source=SOURCE,
                name=job.repo_id,
                version=job.commit,
                member_path=entry.path,
            )
            verdict, why, report = _scan(lifecycle, blob.sha256, job.accepted_rules)
            if report is not None:
                reports.append(FileReport.model_validate({**report, "path": entry.path}))
            state.status[entry.path] = FileStatus.SAFE if verdict else FileStatus.UNSAFE
            if not verdict:
                state.reason[entry.path] = why
                state.reasons.append(f"{entry.path}: {why}")
            released.append(ReleasedFile(entry, blob.path))
    report_path = write_report(qdir, reports) if reports else None
    scanned = bool(released)
    outcome = PullOutcome.REFUSED
    snapshot = None
    removed: tuple[str, ...] = ()
    if scanned and not state.reasons:
        done = release(job.settings.hf_cache_dir, job.repo_id, job.commit, job.revision, released)
        snapshot, removed = done.snapshot, done.removed
        outcome = PullOutcome.RELEASED
        # The blob store keeps the scanned bytes and the cache the released copy; the download
        # area of a released pull is no longer needed. Refused pulls keep theirs.
        shutil.rmtree(qdir / "files", ignore_errors=True)
    elif scanned:
        outcome = PullOutcome.QUARANTINED
    result = PullResult(
        repo_id=job.repo_id,
        revision=job.revision,
        commit=job.commit,
        outcome=outcome,
        files=state.files(),
        reasons=tuple(state.reasons),
        quarantine_dir=qdir,
        manifest_path=qdir / "pull.json",
        report_path=report_path,
        snapshot_dir=snapshot,
        removed=removed,
    )
    write_json(result.manifest_path, result.to_dict())
    return result


def _store(lifecycle: Lifecycle, entry: TreeEntry, state: _State) -> StoredBlob:
    local = state.local[entry.path]
    if local == lifecycle.blobs.path_for(state.sha256[entry.path]):
        # Reused from an earlier pull: already in the store under its digest.
        return StoredBlob(sha256=state.sha256[entry.path], size=entry.size, path=local)
    blob = lifecycle.blobs.put_file(local)
    if blob.sha256 != state.sha256[entry.path]:
        # The quarantine copy changed between verification and storage.
        msg = f"{entry.path}: bytes changed in quarantine ({blob.sha256} after verification)"
        raise RegistryError(msg)
    return blob


def _scan(
    lifecycle: Lifecycle, sha256: str, accepted: frozenset[str] = frozenset()
) -> tuple[bool, str, dict[str, Any] | None]:
    """(releasable?, why not, stored report). A failed or unfinished scan is not releasable.

    An UNSAFE verdict is releasable only when every finding at or above the threshold is of
    a rule in ``accepted``.
    """
    view = lifecycle.run_scan(sha256)
    deadline = time.monotonic() + _SCAN_WAIT_SECONDS
    while view is None or view.status not in {ScanStatus.DONE, ScanStatus.FAILED}:
        # Another worker holds the claim (a queued job raced us): wait for its verdict.
        if time.monotonic() > deadline:
            return False, "its scan did not finish in time", None
        time.sleep(0.5)
        view = lifecycle.get(sha256).latest_scan
    if view.status is ScanStatus.FAILED:
        return False, f"scan failed: {view.error}", None
    artifact = lifecycle.get(sha256)
    report = stored_report(lifecycle, sha256)
    if artifact.state is ArtifactState.REJECTED:
        return False, f"rejected: {artifact.state_reason}", report
    if view.verdict != Verdict.SAFE.value and not _only_accepted(report, accepted):
        return False, f"scan verdict {view.verdict}: {artifact.state_reason}", report
    return True, "", report


def _only_accepted(report: dict[str, Any] | None, accepted: frozenset[str]) -> bool:
    if report is None or not accepted:
        return False
    threshold = Severity.parse(str(report["threshold"]))
    blocking = {
        str(f["rule_id"])
        for f in report["findings"]
        if Severity.parse(str(f["severity"])) >= threshold
    }
    return bool(blocking) and blocking <= accepted


def _audit(lifecycle: Lifecycle, principal: Principal, result: PullResult) -> None:
    with lifecycle.store.write() as session:
        audit_append(
            session,
            principal=f"{principal.issuer}|{principal.subject}",
            action="hf-pull",
            resource=result.uri,
            decision=result.outcome.value,
            reason="; ".join(result.reasons)[:2000] or _released_text(result),
        )


def _released_text(result: PullResult) -> str:
    text = f"released {len(result.files)} file(s)"
    if result.removed:
        # Someone else wrote into the snapshot; the security team wants to know who and why.
        text += "; removed unscanned snapshot entries: " + ", ".join(result.removed)
    return text[:2000]
