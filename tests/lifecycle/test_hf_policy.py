"""The pull's pre-download policy and its hub client, without a server."""

from __future__ import annotations

import hashlib
import os
import posixpath
from pathlib import Path

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mamori.errors import RegistryError
from mamori.lifecycle.hf import (
    ALLOWED_EXTENSIONS,
    ALLOWED_FILENAMES,
    DownloadRefusedError,
    FileKind,
    HubClient,
    PullPolicy,
    TreeEntry,
)
from mamori.lifecycle.hf.client import _tree_entry
from mamori.lifecycle.hf.policy import (
    classify,
    is_commit_sha,
    path_problem,
    remote_code_modules,
    repo_id_problem,
    revision_problem,
)

SHA = "0123456789abcdef0123456789abcdef01234567"
_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("model.safetensors", FileKind.DATA),
        ("onnx/model.onnx", FileKind.DATA),
        ("pytorch_model.bin", FileKind.DATA),
        ("sub/.gitattributes", FileKind.DATA),
        ("LICENSE", FileKind.DATA),
        ("modeling_x.py", FileKind.CODE),
        ("MODELING.PY", FileKind.CODE),
        ("run.sh", FileKind.DISALLOWED),
        ("lib.so", FileKind.DISALLOWED),
        ("noextension", FileKind.DISALLOWED),
        (".json", FileKind.DISALLOWED),
    ],
)
def test_files_are_classified_by_their_name_before_download(path, kind):
    assert classify(path, PullPolicy()) is kind


def test_exclude_globs_win_over_every_other_rule():
    assert classify("evil.py", PullPolicy(exclude=("*.py",))) is FileKind.EXCLUDED


def test_every_allowlist_entry_carries_a_rationale():
    for table in (ALLOWED_EXTENSIONS, ALLOWED_FILENAMES):
        assert all(len(why) > 10 for why in table.values())
    assert all(ext.startswith(".") and ext == ext.lower() for ext in ALLOWED_EXTENSIONS)


def test_limits_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        PullPolicy(max_file_bytes=0)


@pytest.mark.parametrize("path", ["config.json", "a/b/c.bin", "x..y.json", ".gitattributes"])
def test_ordinary_tree_paths_are_accepted(path):
    assert path_problem(path) is None


@pytest.mark.parametrize(
    "path",
    ["", "../x", "a/../b", "./a", "a//b", "/abs", "C:/x", "a\\b", "a/\x00", ".git/config", "a/"],
)
def test_hostile_tree_paths_are_refused(path):
    assert path_problem(path) is not None


@given(st.text(max_size=60))
def test_an_accepted_tree_path_never_leaves_its_directory(path):
    if path_problem(path) is None:
        joined = posixpath.normpath(posixpath.join("/q/files", path))
        assert joined.startswith("/q/files/")
        assert joined == "/q/files/" + path


@pytest.mark.parametrize("revision", ["main", "v1.0", "refs/pr/1", SHA])
def test_ordinary_revisions_are_accepted(revision):
    assert revision_problem(revision) is None


@pytest.mark.parametrize("revision", ["", "../main", "a//b", "/main", "main/", "a b", "x/./y"])
def test_revisions_that_would_escape_refs_are_refused(revision):
    assert revision_problem(revision) is not None


@pytest.mark.parametrize("repo", ["acme", "a/b/c", "acme/..", "acme/a--b", "-x/y", "acme/"])
def test_malformed_repo_ids_are_refused(repo):
    assert repo_id_problem(repo) is not None


def test_only_a_full_lowercase_sha_is_a_pinned_commit():
    assert is_commit_sha(SHA)
    assert not is_commit_sha(SHA[:12])
    assert not is_commit_sha(SHA.upper())
    assert not is_commit_sha("main")


def test_auto_map_names_local_modules_and_foreign_code():
    config = {
        "auto_map": {
            "AutoConfig": "configuration_x.XConfig",
            "AutoTokenizer": ["tokenization_x.XTok", None],
            "AutoModel": "other/repo--modeling_y.Y",
        }
    }
    assert remote_code_modules(config) == (
        ("configuration_x.py", "tokenization_x.py"),
        ("other/repo--modeling_y.Y",),
    )


@pytest.mark.parametrize("auto_map", [["a.B"], "a.B", {"AutoModel": 3}, {"AutoModel": "nodot"}])
def test_an_odd_auto_map_counts_as_foreign_code(auto_map):
    assert remote_code_modules({"auto_map": auto_map})[1]


@given(_json)
def test_any_json_config_yields_code_references_or_nothing(config):
    local, foreign = remote_code_modules(config)
    assert all(isinstance(m, str) and m.endswith(".py") for m in local)
    assert all(isinstance(f, str) for f in foreign)


@given(_json)
def test_any_json_tree_entry_is_parsed_or_refused_as_a_registry_error(item):
    try:
        entry = _tree_entry("acme/x", item)
    except RegistryError:
        return
    assert entry is None or isinstance(entry, TreeEntry)


# --- the client ------------------------------------------------------------------------------


def _entry(content: bytes) -> TreeEntry:
    return TreeEntry(
        path="model.bin",
        size=len(content),
        git_oid="0" * 40,
        lfs_sha256=hashlib.sha256(content).hexdigest(),
    )


def test_the_token_goes_to_the_endpoint_and_never_to_the_cdn(tmp_path: Path):
    content = b"weights"
    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.headers.get("Authorization")))
        if request.url.host == "hub.test":
            return httpx.Response(
                302,
                headers={"Location": "https://cdn.test/blob?sig=1", "X-Repo-Commit": SHA},
            )
        return httpx.Response(200, content=content)

    client = HubClient(
        "https://hub.test",
        token="hf_secret",
        redirect_hosts=("cdn.test",),
        transport=httpx.MockTransport(handler),
    )
    with client:
        client.download("acme/x", SHA, _entry(content), tmp_path / "model.bin")
    assert seen == [("hub.test", "Bearer hf_secret"), ("cdn.test", None)]
    assert (tmp_path / "model.bin").read_bytes() == content


def test_an_https_hub_may_not_redirect_to_plain_http(tmp_path: Path):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "http://cdn.test/blob"})

    client = HubClient(
        "https://hub.test", redirect_hosts=("cdn.test",), transport=httpx.MockTransport(handler)
    )
    with client, pytest.raises(DownloadRefusedError, match="not the hub or an allowed CDN"):
        client.download("acme/x", SHA, _entry(b"w"), tmp_path / "model.bin")


def test_a_redirect_loop_is_refused(tmp_path: Path):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(302, headers={"Location": "/again"})

    client = HubClient("https://hub.test", transport=httpx.MockTransport(handler))
    with client, pytest.raises(DownloadRefusedError, match="redirects"):
        client.download("acme/x", SHA, _entry(b"w"), tmp_path / "model.bin")
    assert os.listdir(tmp_path) == []


def test_bytes_from_another_commit_are_refused(tmp_path: Path):
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"w", headers={"X-Repo-Commit": "f" * 40})

    client = HubClient("https://hub.test", transport=httpx.MockTransport(handler))
    with client, pytest.raises(DownloadRefusedError, match="served commit"):
        client.download("acme/x", SHA, _entry(b"w"), tmp_path / "model.bin")


def test_a_hub_answering_another_commit_for_a_pinned_one_is_refused():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"sha": "f" * 40})

    client = HubClient("https://hub.test", transport=httpx.MockTransport(handler))
    with client, pytest.raises(DownloadRefusedError, match="asked for commit"):
        client.resolve_commit("acme/x", SHA)


def test_a_hub_that_stops_answering_is_an_error_not_a_hang():
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("stalled", request=request)

    client = HubClient("https://hub.test", transport=httpx.MockTransport(handler))
    with client, pytest.raises(RegistryError, match="failed"):
        client.resolve_commit("acme/x", "main")


def test_tree_pagination_may_not_leave_the_endpoint():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, json=[], headers={"Link": '<https://elsewhere.test/api?c=1>; rel="next"'}
        )

    client = HubClient("https://hub.test", transport=httpx.MockTransport(handler))
    with client, pytest.raises(RegistryError, match="pagination"):
        client.list_tree("acme/x", SHA, max_files=10)


def test_an_endpoint_must_be_http():
    with pytest.raises(RegistryError, match="http"):
        HubClient("file:///etc")
