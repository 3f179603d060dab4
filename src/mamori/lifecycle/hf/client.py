"""A small, suspicious client for the Hugging Face hub's HTTP routes.

Three routes, the ones ``huggingface_hub`` itself calls (``HfApi.model_info``,
``HfApi.list_repo_tree`` and ``hf_hub_download`` in huggingface_hub 2.x):

* ``GET /api/models/{repo}/revision/{rev}`` → ``{"sha": <commit>, ...}``
* ``GET /api/models/{repo}/tree/{sha}?recursive=true`` → ``[{"type", "path", "size", "oid",
  "lfs": {"oid", "size"}}]``, paginated with a ``Link: <…>; rel="next"`` header
* ``GET /{repo}/resolve/{sha}/{path}`` → the bytes, or a redirect to the LFS/Xet CDN.

Why not ``HfApi``: its shared session has no timeout (``timeout=None`` in
``huggingface_hub.utils._http.default_client_factory``), follows redirects to any host, reads
whole JSON bodies into memory and picks up a token from disk when none is passed. A pull must
fail, not hang, on a stalled hub, bound what it reads, and send the token to the endpoint only.
The tests run ``HfApi`` against the same fake hub to show both read the same protocol.

Redirects: a download may follow up to five redirects, each to the endpoint's own origin or to
a host in ``Settings.hf_redirect_hosts`` (the hub's CDNs) over HTTPS (or over the endpoint's
own scheme, for a plain-http mirror). The ``Authorization`` header
is dropped when leaving the endpoint. Whatever host serves the bytes, they are checked against
the tree's digest before anything else sees them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Self
from urllib.parse import quote, urljoin, urlsplit

import httpx

from mamori.errors import RegistryError
from mamori.lifecycle.hf.policy import TreeEntry, is_commit_sha

__all__ = ["DownloadRefusedError", "HubClient", "git_blob_oid"]

_CHUNK: Final = 1 << 20
_MAX_JSON_BYTES: Final = 64 << 20
_MAX_REDIRECTS: Final = 5
_MAX_PAGES: Final = 10_000
_REDIRECT_CODES: Final = frozenset({301, 302, 303, 307, 308})
_HTTP_OK: Final = 200
_HEX: Final = frozenset("0123456789abcdef")


class DownloadRefusedError(RegistryError):
    """The hub served something the pull must not accept (digest, size, redirect, commit)."""


def git_blob_oid(path: Path) -> str:
    """The git blob id of a file: ``sha1(b"blob <size>" NUL content)``."""
    size = path.stat().st_size
    hasher = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            hasher.update(chunk)
    return hasher.hexdigest()


@dataclass(frozen=True, slots=True)
class _Origin:
    scheme: str
    host: str
    port: int | None

    @classmethod
    def of(cls, url: str) -> _Origin:
        parts = urlsplit(url)
        return cls(parts.scheme, (parts.hostname or "").lower(), parts.port)


class HubClient:
    """Metadata and verified downloads from one hub endpoint."""

    def __init__(
        self,
        endpoint: str,
        *,
        token: str | None = None,
        redirect_hosts: tuple[str, ...] = (),
        timeout: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Talk to ``endpoint`` (e.g. ``https://huggingface.co``); ``token`` goes there only."""
        if urlsplit(endpoint).scheme not in {"http", "https"}:
            msg = f"hub endpoint must be an http(s) URL, not {endpoint[:200]!r}"
            raise RegistryError(msg)
        self.endpoint = endpoint.rstrip("/")
        self._origin = _Origin.of(self.endpoint)
        self._token = token
        self._redirect_hosts = frozenset(h.lower() for h in redirect_hosts)
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout),
            follow_redirects=False,
            transport=transport,
            headers={"User-Agent": "mamori-pull"},
            trust_env=False,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    # --- metadata ----------------------------------------------------------------------------

    def resolve_commit(self, repo_id: str, revision: str) -> str:
        """The 40-hex commit sha ``revision`` points at now."""
        url = f"{self.endpoint}/api/models/{repo_id}/revision/{quote(revision, safe='')}"
        data, _ = self._get_json(url)
        sha = data.get("sha") if isinstance(data, dict) else None
        if not isinstance(sha, str) or not is_commit_sha(sha):
            msg = f"{repo_id}@{revision}: the hub did not answer with a commit sha"
            raise RegistryError(msg)
        if is_commit_sha(revision) and sha != revision:
            msg = f"{repo_id}: asked for commit {revision}, the hub answered {sha}"
            raise DownloadRefusedError(msg)
        return sha

    def list_tree(self, repo_id: str, commit: str, *, max_files: int) -> tuple[TreeEntry, ...]:
        """Every file of the tree at ``commit``, with sizes and digests (folders omitted)."""
        url: str | None = f"{self.endpoint}/api/models/{repo_id}/tree/{commit}?recursive=true"
        entries: list[TreeEntry] = []
        pages = 0
        while url is not None:
            pages += 1
            if pages > _MAX_PAGES:
                msg = f"{repo_id}: tree listing has more than {_MAX_PAGES} pages"
                raise RegistryError(msg)
            data, response = self._get_json(url)
            if not isinstance(data, list):
                msg = f"{repo_id}: tree listing is not a JSON list"
                raise RegistryError(msg)
            entries.extend(e for item in data if (e := _tree_entry(repo_id, item)) is not None)
            if len(entries) > max_files:
                msg = f"{repo_id}: the tree lists more than {max_files} files"
                raise DownloadRefusedError(msg)
            url = _next_page(response, self._origin)
        return tuple(entries)

    def _get_json(self, url: str) -> tuple[object, httpx.Response]:
        try:
            with self._client.stream("GET", url, headers=self._auth()) as response:
                if response.status_code != _HTTP_OK:
                    msg = f"GET {_redact(url)}: HTTP {response.status_code}"
                    raise RegistryError(msg)
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > _MAX_JSON_BYTES:
                        msg = f"GET {_redact(url)}: response exceeds {_MAX_JSON_BYTES} bytes"
                        raise RegistryError(msg)
        except httpx.HTTPError as exc:
            msg = f"GET {_redact(url)} failed"
            raise RegistryError(msg) from exc
        try:
            return json.loads(body), response
        except ValueError as exc:
            msg = f"GET {_redact(url)}: not JSON"
            raise RegistryError(msg) from exc

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"} if self._token else {}

    # --- downloads ---------------------------------------------------------------------------

    def download(
        self,
        repo_id: str,
        commit: str,
        entry: TreeEntry,
        dest: Path,
        *,
        on_bytes: Callable[[int], None] | None = None,
    ) -> str:
        """Stream one file to ``dest`` and return its SHA-256; verified or refused.

        ``on_bytes(n)`` is called as each chunk of ``n`` bytes arrives (progress display).

        The file must be exactly ``entry.size`` bytes and match the tree's LFS SHA-256 (LFS
        files) or git blob id (files in git). ``dest`` is written through a temporary file in
        the same directory and renamed only when verified. Refused bytes are kept beside it
        as ``<name>.refused`` for inspection.
        """
        url = f"{self.endpoint}/{repo_id}/resolve/{commit}/{quote(entry.path, safe='/')}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(f"{dest.name}.{secrets.token_hex(6)}.partial")
        try:
            with self._open_following(url, commit) as response:
                sha256, git = self._stream_to(response, partial, entry, on_bytes)
        except httpx.HTTPError as exc:
            partial.unlink(missing_ok=True)
            msg = f"download of {entry.path} failed"
            raise RegistryError(msg) from exc
        except DownloadRefusedError:
            if partial.exists():
                partial.replace(dest.with_name(dest.name + ".refused"))
            raise
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        problem = _digest_problem(entry, sha256, git)
        if problem is not None:
            partial.replace(dest.with_name(dest.name + ".refused"))
            msg = f"{entry.path}: {problem}"
            raise DownloadRefusedError(msg)
        partial.replace(dest)
        return sha256

    @contextlib.contextmanager
    def _open_following(self, url: str, commit: str) -> Iterator[httpx.Response]:
        current = url
        for hop in range(_MAX_REDIRECTS + 1):
            origin = _Origin.of(current)
            headers = self._auth() if origin == self._origin else {}
            with self._client.stream("GET", current, headers=headers) as response:
                served = response.headers.get("X-Repo-Commit")
                if hop == 0 and served is not None and served != commit:
                    msg = f"the hub served commit {served[:64]!r} for a request at {commit}"
                    raise DownloadRefusedError(msg)
                if response.status_code in _REDIRECT_CODES:
                    location = response.headers.get("Location")
                    if not location:
                        msg = f"GET {_redact(current)}: redirect without a Location"
                        raise RegistryError(msg)
                    current = urljoin(current, location)
                    self._check_redirect(current)
                    continue
                if response.status_code != _HTTP_OK:
                    msg = f"GET {_redact(current)}: HTTP {response.status_code}"
                    raise RegistryError(msg)
                yield response
                return
        msg = f"GET {_redact(url)}: more than {_MAX_REDIRECTS} redirects"
        raise DownloadRefusedError(msg)

    def _check_redirect(self, target: str) -> None:
        origin = _Origin.of(target)
        if origin == self._origin:
            return
        # An https endpoint only ever redirects to https; a plain-http mirror (a test hub, an
        # air-gapped proxy) may use its own scheme for its CDN host.
        if origin.scheme in {"https", self._origin.scheme} and origin.host in self._redirect_hosts:
            return
        msg = f"redirect to {origin.scheme}://{origin.host} is not the hub or an allowed CDN host"
        raise DownloadRefusedError(msg)

    @staticmethod
    def _stream_to(
        response: httpx.Response,
        partial: Path,
        entry: TreeEntry,
        on_bytes: Callable[[int], None] | None,
    ) -> tuple[str, str]:
        declared = response.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) != entry.size:
            msg = f"{entry.path}: served {declared} bytes, the tree lists {entry.size}"
            raise DownloadRefusedError(msg)
        sha256 = hashlib.sha256()
        git = hashlib.sha1(f"blob {entry.size}\0".encode(), usedforsecurity=False)
        written = 0
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as out:
            for chunk in response.iter_bytes(_CHUNK):
                written += len(chunk)
                if written > entry.size:
                    out.write(chunk[: max(0, entry.size - (written - len(chunk)))])
                    msg = f"{entry.path}: served more than the {entry.size} bytes the tree lists"
                    raise DownloadRefusedError(msg)
                sha256.update(chunk)
                git.update(chunk)
                out.write(chunk)
                if on_bytes is not None:
                    on_bytes(len(chunk))
            out.flush()
            os.fsync(out.fileno())
        if written != entry.size:
            msg = f"{entry.path}: served {written} bytes, the tree lists {entry.size}"
            raise DownloadRefusedError(msg)
        return sha256.hexdigest(), git.hexdigest()


def _digest_problem(entry: TreeEntry, sha256: str, git: str) -> str | None:
    if entry.lfs_sha256 is not None:
        if sha256 != entry.lfs_sha256:
            return f"sha256 {sha256} does not match the tree's LFS oid {entry.lfs_sha256}"
        return None
    if git != entry.git_oid:
        return f"git blob id {git} does not match the tree's oid {entry.git_oid}"
    return None


def _tree_entry(repo_id: str, item: object) -> TreeEntry | None:
    """One listed file; folders give ``None``; anything malformed is an error, not a skip."""
    if not isinstance(item, dict):
        msg = f"{repo_id}: malformed tree entry {item!r:.200}"
        raise RegistryError(msg)
    kind = item.get("type")
    if kind == "directory":
        return None
    path, size, oid, lfs = item.get("path"), item.get("size"), item.get("oid"), item.get("lfs")
    ok = (
        kind == "file"
        and isinstance(path, str)
        and isinstance(size, int)
        and not isinstance(size, bool)
        and size >= 0
        and _is_hex(oid, 40)
    )
    lfs_sha: str | None = None
    if ok and lfs is not None:
        lfs_oid = lfs.get("oid") if isinstance(lfs, dict) else None
        lfs_size = lfs.get("size") if isinstance(lfs, dict) else None
        ok = _is_hex(lfs_oid, 64) and lfs_size == size
        lfs_sha = lfs_oid if isinstance(lfs_oid, str) else None
    if not ok:
        msg = f"{repo_id}: malformed tree entry {item!r:.300}"
        raise RegistryError(msg)
    # Narrowed by `ok` above; the asserts tell mypy.
    assert isinstance(path, str)
    assert isinstance(size, int)
    assert isinstance(oid, str)
    return TreeEntry(path=path, size=size, git_oid=oid, lfs_sha256=lfs_sha)


def _is_hex(value: object, length: int) -> bool:
    return isinstance(value, str) and len(value) == length and _HEX.issuperset(value)


def _next_page(response: httpx.Response, origin: _Origin) -> str | None:
    link = response.links.get("next", {}).get("url")
    if not link:
        return None
    target = urljoin(str(response.url), link)
    if _Origin.of(target) != origin:
        msg = "tree pagination points away from the hub endpoint"
        raise RegistryError(msg)
    return target


def _redact(url: str) -> str:
    # Signed CDN URLs carry credentials in the query string; never print them.
    return url.split("?", 1)[0][:300]
