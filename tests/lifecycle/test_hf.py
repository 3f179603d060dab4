"""Quarantined Hugging Face pulls against a fake hub on 127.0.0.1.

The hub is reached only through ``Settings.hf_endpoint`` (the pull never reads
``huggingface_hub.constants.ENDPOINT``, which that library fixes at import time from
``HF_ENDPOINT``); tests that use huggingface_hub or transformers pass ``endpoint=`` /
``cache_dir=`` explicitly, or run in a subprocess with the environment set.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save as save_safetensors
from sqlalchemy import select

from mamori.config import Settings
from mamori.errors import AccessDeniedError, RegistryError
from mamori.lifecycle import Lifecycle
from mamori.lifecycle.hf import FileStatus, PullOutcome, PullPolicy, pull
from mamori.lifecycle.hf.cache import repo_cache_dir
from mamori.store import ArtifactState
from mamori.store.models import ArtifactRow, AuditRow

from .conftest import make_principal
from .fakehub import FakeFile, FakeHub, git_oid

IMPORTER = make_principal("ivan", "importer")
REPO = "acme/tiny-bert"

BERT_CONFIG = {
    "model_type": "bert",
    "architectures": ["BertModel"],
    "hidden_size": 8,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 16,
    "vocab_size": 32,
    "max_position_embeddings": 16,
}


class _Reduce:
    """Unpickling this would run `true`; the tests only ever scan the bytes."""

    def __reduce__(self):
        return (os.system, ("true",))


def _json(data: object) -> FakeFile:
    return FakeFile(json.dumps(data).encode())


def _weights() -> FakeFile:
    tensors = {"embeddings.weight": np.zeros((4, 8), dtype=np.float32)}
    return FakeFile(save_safetensors(tensors), lfs=True)


def _malicious_bin() -> FakeFile:
    import torch

    buffer = io.BytesIO()
    torch.save({"state": _Reduce()}, buffer)
    return FakeFile(buffer.getvalue(), lfs=True)


def _safe_files() -> dict[str, FakeFile]:
    return {
        ".gitattributes": FakeFile(b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"),
        "README.md": FakeFile(b"# tiny bert\n"),
        "config.json": _json(BERT_CONFIG),
        "model.safetensors": _weights(),
    }


@pytest.fixture
def hub():
    server = FakeHub()
    yield server
    server.close()


@pytest.fixture
def settings(tmp_path: Path, hub: FakeHub) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        hf_endpoint=hub.endpoint,
        hf_cache_dir=tmp_path / "hf-cache",
        hf_redirect_hosts=(hub.cdn_host,),
    )


def _pull(lifecycle: Lifecycle, settings: Settings, repo: str = REPO, revision="main", **kw):
    policy = PullPolicy.from_settings(settings, **kw) if kw else None
    return pull(lifecycle, IMPORTER, repo, revision, settings=settings, policy=policy)


def _statuses(result) -> dict[str, FileStatus]:
    return {f.path: f.status for f in result.files}


# --- released --------------------------------------------------------------------------------


def test_a_safe_repo_is_released_into_the_hf_cache_layout(lifecycle, settings, hub):
    repo = hub.add(REPO, _safe_files())
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.RELEASED, result.reasons
    assert result.released
    root = repo_cache_dir(settings.hf_cache_dir, REPO)
    assert root.name == "models--acme--tiny-bert"
    assert (root / "refs" / "main").read_text() == repo.commit
    weights = root / "snapshots" / repo.commit / "model.safetensors"
    assert weights.is_symlink()
    assert os.readlink(weights) == f"../../blobs/{repo.files['model.safetensors'].sha256}"
    config = root / "snapshots" / repo.commit / "config.json"
    assert os.readlink(config) == f"../../blobs/{git_oid(config.read_bytes())}"
    assert json.loads(config.read_text()) == BERT_CONFIG
    assert not (result.quarantine_dir / "files").exists()
    assert json.loads(result.manifest_path.read_text())["outcome"] == "released"


def test_a_released_repo_loads_with_local_files_only(lifecycle, settings, hub):
    from transformers import AutoConfig

    hub.add(REPO, _safe_files())
    assert _pull(lifecycle, settings).released
    config = AutoConfig.from_pretrained(
        REPO, cache_dir=settings.hf_cache_dir, local_files_only=True
    )
    assert config.model_type == "bert"
    assert config.hidden_size == 8


@pytest.mark.slow
def test_a_released_repo_loads_with_hf_hub_offline(lifecycle, settings, hub):
    repo = hub.add(REPO, _safe_files())
    assert _pull(lifecycle, settings).released
    script = (
        "import sys\n"
        "from huggingface_hub import snapshot_download\n"
        "from transformers import AutoConfig\n"
        "from safetensors.numpy import load_file\n"
        f"config = AutoConfig.from_pretrained({REPO!r})\n"
        f"path = snapshot_download({REPO!r})\n"
        "weights = load_file(path + '/model.safetensors')\n"
        "print(config.model_type, path.rsplit('/', 1)[-1], sorted(weights))\n"
    )
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(settings.hf_cache_dir),
        "HF_ENDPOINT": "http://127.0.0.1:9",  # nothing listens there: offline or fail
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["bert", repo.commit, "['embeddings.weight']"]


def test_main_is_resolved_to_the_commit_and_bound_as_an_hf_uri(lifecycle, settings, hub):
    repo = hub.add(REPO, _safe_files())
    result = _pull(lifecycle, settings)
    assert result.commit == repo.commit
    assert result.uri == f"hf://{REPO}@{repo.commit}"
    weights = next(f for f in result.files if f.path == "model.safetensors")
    assert weights.sha256 == repo.files["model.safetensors"].sha256
    view = lifecycle.get(weights.sha256)
    assert [(b.source, b.name, b.version, b.member_path) for b in view.bindings] == [
        ("hf", REPO, repo.commit, "model.safetensors")
    ]
    assert view.state is ArtifactState.SAFE
    # Released locally is not deployable: the gate still wants an approval.
    gate = lifecycle.gate_binding("hf", REPO, repo.commit)
    assert not gate.allowed


def test_a_pinned_commit_is_released_without_a_ref(lifecycle, settings, hub):
    repo = hub.add(REPO, _safe_files())
    result = _pull(lifecycle, settings, revision=repo.commit)
    assert result.released
    root = repo_cache_dir(settings.hf_cache_dir, REPO)
    assert not (root / "refs").exists()
    assert (root / "snapshots" / repo.commit / "config.json").exists()


def test_pulling_twice_is_idempotent(lifecycle, settings, hub):
    hub.add(REPO, _safe_files())
    first = _pull(lifecycle, settings)
    downloads = len(hub.resolve_hits())
    second = _pull(lifecycle, settings)
    assert second.outcome is first.outcome is PullOutcome.RELEASED
    assert [(f.path, f.sha256, f.status) for f in second.files] == [
        (f.path, f.sha256, f.status) for f in first.files
    ]
    assert len(hub.resolve_hits()) == downloads, "verified blobs are reused, not downloaded"
    view = lifecycle.get(next(f.sha256 for f in second.files if f.path == "config.json"))
    assert len(view.bindings) == 1


def test_tree_pagination_is_followed(lifecycle, settings, tmp_path):
    paged = FakeHub(page_size=1)
    try:
        repo = paged.add(REPO, _safe_files())
        local = settings.model_copy(update={"hf_endpoint": paged.endpoint})
        result = _pull(lifecycle, local)
    finally:
        paged.close()
    assert result.released
    assert sorted(f.path for f in result.files) == sorted(repo.files)


def test_a_corrupt_cache_blob_is_replaced_on_release(lifecycle, settings, hub):
    repo = hub.add(REPO, _safe_files())
    sha = repo.files["model.safetensors"].sha256
    blob = repo_cache_dir(settings.hf_cache_dir, REPO) / "blobs" / sha
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"x" * len(repo.files["model.safetensors"].content))
    assert _pull(lifecycle, settings).released
    assert hashlib.sha256(blob.read_bytes()).hexdigest() == sha


def test_excluded_files_are_neither_downloaded_nor_released(lifecycle, settings, hub):
    files = _safe_files() | {"docs/diagram.png": FakeFile(b"\x89PNG....")}
    repo = hub.add(REPO, files)
    result = _pull(lifecycle, settings, exclude=("docs/*",))
    assert result.released
    assert _statuses(result)["docs/diagram.png"] is FileStatus.EXCLUDED
    assert not any("diagram" in hit for hit in hub.resolve_hits())
    snapshot = repo_cache_dir(settings.hf_cache_dir, REPO) / "snapshots" / repo.commit
    assert not (snapshot / "docs").exists()


# --- quarantined -----------------------------------------------------------------------------


def test_a_malicious_pickle_stays_in_quarantine_with_its_report(lifecycle, settings, hub):
    repo = hub.add(REPO, {"config.json": _json(BERT_CONFIG), "pytorch_model.bin": _malicious_bin()})
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.QUARANTINED
    assert _statuses(result) == {
        "config.json": FileStatus.SAFE,
        "pytorch_model.bin": FileStatus.UNSAFE,
    }
    assert not repo_cache_dir(settings.hf_cache_dir, REPO).exists()
    assert (result.quarantine_dir / "files" / "pytorch_model.bin").is_file()
    assert result.report_path is not None
    report = json.loads(result.report_path.read_text())
    assert report["summary"]["verdict"] == "unsafe"
    unsafe = {r["path"]: r for r in report["reports"]}["pytorch_model.bin"]
    assert unsafe["verdict"] == "unsafe"
    assert unsafe["findings"]
    manifest = json.loads(result.manifest_path.read_text())
    assert manifest["outcome"] == "quarantined"
    assert manifest["commit"] == repo.commit
    bad = next(f for f in result.files if f.path == "pytorch_model.bin")
    assert lifecycle.get(bad.sha256).state is ArtifactState.UNSAFE


def test_a_file_whose_scan_fails_keeps_the_pull_in_quarantine(
    lifecycle, settings, hub, monkeypatch
):
    def broken(*args, **kwargs):
        raise OSError("disk on fire")

    monkeypatch.setattr("mamori.lifecycle.service.scan_path", broken)
    hub.add(REPO, {"config.json": _json(BERT_CONFIG)})
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.QUARANTINED
    assert _statuses(result) == {"config.json": FileStatus.UNSAFE}
    assert "scan failed: OSError: disk on fire" in result.reasons[0]
    assert not repo_cache_dir(settings.hf_cache_dir, REPO).exists()


# --- refused ---------------------------------------------------------------------------------


def test_a_tampered_lfs_blob_is_refused_and_nothing_is_released(lifecycle, settings, hub):
    files = _safe_files()
    honest = files["model.safetensors"].content
    files["model.safetensors"].served = honest[:-1] + bytes([honest[-1] ^ 0xFF])
    hub.add(REPO, files)
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.REFUSED
    assert _statuses(result)["model.safetensors"] is FileStatus.REFUSED
    assert "does not match the tree's LFS oid" in " ".join(result.reasons)
    assert not repo_cache_dir(settings.hf_cache_dir, REPO).exists()
    assert (result.quarantine_dir / "files" / "model.safetensors.refused").is_file()
    assert not (result.quarantine_dir / "files" / "model.safetensors").exists()
    with lifecycle.store.read() as session:
        assert session.execute(select(ArtifactRow)).first() is None, "nothing was registered"


def test_a_git_file_served_with_other_bytes_is_refused(lifecycle, settings, hub):
    files = _safe_files()
    files["README.md"].served = b"# tiny berT\n"
    hub.add(REPO, files)
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.REFUSED
    assert "git blob id" in next(f.reason for f in result.files if f.path == "README.md")


def test_a_blob_longer_than_the_tree_says_is_refused(lifecycle, settings, hub):
    files = _safe_files()
    files["model.safetensors"].served = files["model.safetensors"].content + b"\0" * 4096
    hub.add(REPO, files)
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.REFUSED
    assert "bytes" in next(f.reason for f in result.files if f.path == "model.safetensors")


def test_a_redirect_to_another_host_is_refused(lifecycle, settings, hub):
    files = _safe_files()
    files["model.safetensors"].redirect = "http://203.0.113.9/steal"
    hub.add(REPO, files)
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.REFUSED
    assert "not the hub or an allowed CDN host" in " ".join(result.reasons)


def test_auto_map_code_is_refused_before_any_download(lifecycle, settings, hub):
    config = BERT_CONFIG | {"auto_map": {"AutoModel": "modeling_evil.EvilModel"}}
    files = {"config.json": _json(config), "modeling_evil.py": FakeFile(b"import os\n")}
    hub.add(REPO, files)
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.REFUSED
    assert _statuses(result)["modeling_evil.py"] is FileStatus.REFUSED
    assert "trust_remote_code" in " ".join(result.reasons)
    assert hub.resolve_hits() == []


def test_auto_map_is_refused_after_reading_the_config(lifecycle, settings, hub):
    config = BERT_CONFIG | {"auto_map": {"AutoModel": "modeling_evil.EvilModel"}}
    hub.add(REPO, {"config.json": _json(config), "model.safetensors": _weights()})
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.REFUSED
    assert "auto_map names modeling_evil.py" in result.reasons[0]
    assert _statuses(result)["model.safetensors"] is FileStatus.NOT_DOWNLOADED
    assert [h.rsplit("/", 1)[-1] for h in hub.resolve_hits()] == ["config.json"]


def test_remote_code_needs_a_pinned_commit_even_when_allowed(lifecycle, settings, hub):
    config = BERT_CONFIG | {"auto_map": {"AutoModel": "modeling_x.XModel"}}
    hub.add(REPO, {"config.json": _json(config), "modeling_x.py": FakeFile(b"X = 1\n")})
    result = _pull(lifecycle, settings, allow_remote_code=True)
    assert result.outcome is PullOutcome.REFUSED
    assert "pinned 40-hex commit sha" in " ".join(result.reasons)


def test_remote_code_is_pulled_when_allowed_at_a_pinned_commit(lifecycle, settings, hub):
    config = BERT_CONFIG | {"auto_map": {"AutoModel": "modeling_x.XModel"}}
    repo = hub.add(REPO, {"config.json": _json(config), "modeling_x.py": FakeFile(b"X = 1\n")})
    result = _pull(lifecycle, settings, revision=repo.commit, allow_remote_code=True)
    assert result.released, result.reasons
    snapshot = repo_cache_dir(settings.hf_cache_dir, REPO) / "snapshots" / repo.commit
    assert (snapshot / "modeling_x.py").read_bytes() == b"X = 1\n"


def test_auto_map_into_another_repo_is_refused_even_when_allowed(lifecycle, settings, hub):
    config = BERT_CONFIG | {"auto_map": {"AutoModel": "evil/code--modeling_x.XModel"}}
    repo = hub.add(REPO, {"config.json": _json(config)})
    result = _pull(lifecycle, settings, revision=repo.commit, allow_remote_code=True)
    assert result.outcome is PullOutcome.REFUSED
    assert "outside this repo" in result.reasons[0]


@pytest.mark.parametrize(
    "path",
    ["../evil.json", "a/../../evil.json", "/etc/evil.json", "a\\..\\evil.json", ".git/config"],
)
def test_a_hostile_tree_path_is_refused_before_any_download(lifecycle, settings, hub, path):
    entry = {"type": "file", "path": path, "size": 2, "oid": "a" * 40}
    hub.add(REPO, _safe_files(), extra_tree=[entry])
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.REFUSED
    assert "unsafe tree path" in next(f.reason for f in result.files if f.path == path)
    assert hub.resolve_hits() == []
    assert not (settings.data_dir / "evil.json").exists()


def test_a_tree_listing_a_path_as_file_and_directory_is_refused(lifecycle, settings, hub):
    entry = {"type": "file", "path": "config.json/x.json", "size": 2, "oid": "a" * 40}
    hub.add(REPO, _safe_files(), extra_tree=[entry])
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.REFUSED
    assert "both as a file and as a directory" in " ".join(result.reasons)
    assert hub.resolve_hits() == []


def test_an_oversize_file_is_refused_before_download(lifecycle, settings, hub):
    hub.add(REPO, _safe_files())
    result = _pull(lifecycle, settings.model_copy(update={"hf_max_file_bytes": 100}))
    assert result.outcome is PullOutcome.REFUSED
    assert "file limit" in next(f.reason for f in result.files if f.path == "model.safetensors")
    assert hub.resolve_hits() == []


def test_an_oversize_repo_is_refused_before_download(lifecycle, settings, hub):
    hub.add(REPO, _safe_files())
    result = _pull(lifecycle, settings.model_copy(update={"hf_max_total_bytes": 200}))
    assert result.outcome is PullOutcome.REFUSED
    assert "over the 200-byte limit" in result.reasons[-1]
    assert hub.resolve_hits() == []


def test_a_file_type_off_the_allowlist_is_refused(lifecycle, settings, hub):
    hub.add(REPO, _safe_files() | {"run.sh": FakeFile(b"#!/bin/sh\n")})
    result = _pull(lifecycle, settings)
    assert result.outcome is PullOutcome.REFUSED
    assert _statuses(result)["run.sh"] is FileStatus.REFUSED
    assert hub.resolve_hits() == []


def test_a_malformed_tree_is_an_error_not_a_refusal(lifecycle, settings, hub):
    hub.add(REPO, _safe_files(), extra_tree=[{"type": "file", "path": "x.json"}])
    with pytest.raises(RegistryError, match="malformed tree entry"):
        _pull(lifecycle, settings)


def test_an_unknown_repo_is_an_error(lifecycle, settings, hub):
    with pytest.raises(RegistryError, match="HTTP 404"):
        _pull(lifecycle, settings, repo="acme/nothing-here")


@pytest.mark.parametrize("repo", ["acme", "a/b/c", "../x", "acme/a--b", "acme/.."])
def test_an_invalid_repo_id_is_an_error(lifecycle, settings, hub, repo):
    with pytest.raises(RegistryError):
        _pull(lifecycle, settings, repo=repo)
    assert hub.hits == []


def test_the_import_needs_the_importer_role(lifecycle, settings, hub):
    hub.add(REPO, _safe_files())
    with pytest.raises(AccessDeniedError):
        pull(lifecycle, make_principal("vera", "viewer"), REPO, settings=settings)
    assert hub.hits == []


def test_every_pull_is_audited_with_its_outcome(lifecycle, settings, hub):
    repo = hub.add(REPO, _safe_files())
    _pull(lifecycle, settings)
    with lifecycle.store.read() as session:
        rows = session.execute(select(AuditRow).where(AuditRow.action == "hf-pull")).scalars()
        assert [(r.resource, r.decision) for r in rows] == [
            (f"hf://{REPO}@{repo.commit}", "released")
        ]


# --- the fake hub speaks huggingface_hub's protocol ---------------------------------------------


def test_huggingface_hub_reads_the_fake_hub_as_the_pull_does(lifecycle, settings, hub, tmp_path):
    from huggingface_hub import HfApi, hf_hub_download

    repo = hub.add(REPO, _safe_files())
    api = HfApi(endpoint=hub.endpoint, token=False)
    assert api.model_info(REPO, revision="main").sha == repo.commit
    listed = {
        f.path: (f.size, f.blob_id, f.lfs.sha256 if f.lfs else None)
        for f in api.list_repo_tree(REPO, revision=repo.commit, recursive=True)
        if hasattr(f, "size")
    }
    result = _pull(lifecycle, settings)
    assert listed == {f.path: (f.size, f.git_oid, f.lfs_sha256) for f in result.files}
    theirs = tmp_path / "theirs"
    for name in repo.files:
        hf_hub_download(REPO, name, cache_dir=theirs, endpoint=hub.endpoint, token=False)
    ours_root = repo_cache_dir(settings.hf_cache_dir, REPO)
    theirs_root = repo_cache_dir(theirs, REPO)
    assert sorted(p.name for p in (ours_root / "blobs").iterdir()) == sorted(
        p.name for p in (theirs_root / "blobs").iterdir()
    )
    for name in repo.files:
        ours = ours_root / "snapshots" / repo.commit / name
        assert os.readlink(ours) == os.readlink(theirs_root / "snapshots" / repo.commit / name)
    assert (ours_root / "refs" / "main").read_text() == (theirs_root / "refs" / "main").read_text()


# --- the snapshot holds exactly the scanned files (issue 13) ---------------------------------


def test_an_unscanned_file_another_tool_left_in_the_snapshot_is_removed_and_reported(
    lifecycle, settings, hub
):
    repo = hub.add(REPO, _safe_files())
    snapshot = repo_cache_dir(settings.hf_cache_dir, REPO) / "snapshots" / repo.commit
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_model.bin").write_bytes(_malicious_bin().content)
    (snapshot / "extra").mkdir()
    (snapshot / "extra" / "loader.py").write_text("import os\n")
    result = _pull(lifecycle, settings)
    assert result.released, result.reasons
    assert sorted(p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*")) == sorted(
        _safe_files()
    )
    assert result.removed == ("extra/", "pytorch_model.bin")
    with lifecycle.store.read() as session:
        (record,) = session.execute(select(AuditRow).where(AuditRow.action == "hf-pull")).scalars()
    assert "pytorch_model.bin" in record.reason


def test_an_unscanned_file_at_a_released_path_is_replaced_by_the_scanned_bytes(
    lifecycle, settings, hub
):
    repo = hub.add(REPO, _safe_files())
    snapshot = repo_cache_dir(settings.hf_cache_dir, REPO) / "snapshots" / repo.commit
    snapshot.mkdir(parents=True)
    (snapshot / "config.json").write_text('{"model_type": "evil"}')
    assert _pull(lifecycle, settings).released
    assert json.loads((snapshot / "config.json").read_text()) == BERT_CONFIG


def test_a_pull_reports_its_download_progress_in_bytes(lifecycle, settings, hub):
    hub.add(REPO, _safe_files())
    seen: list[tuple[int, int]] = []
    result = pull(
        lifecycle,
        IMPORTER,
        REPO,
        "main",
        settings=settings,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert result.released, result.reasons
    assert seen
    done, total = seen[-1]
    assert done == total > 0
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)  # the count only grows
