"""A fake Hugging Face hub on 127.0.0.1, speaking the routes huggingface_hub 2.x calls.

* ``GET /api/models/{org}/{name}/revision/{rev}``: model info with the commit ``sha``
* ``GET /api/models/{org}/{name}/tree/{rev}``: the file listing (``Link`` pagination)
* ``GET|HEAD /{org}/{name}/resolve/{rev}/{path}``: git files served directly with ``ETag``;
  LFS files answered with a 302 to ``http://localhost:<port>/__lfs/<sha256>`` (another host
  name, standing in for the CDN) carrying ``X-Linked-Etag`` and
  ``X-Linked-Size``, like the real hub's redirect to its CDN. Every answer has
  ``X-Repo-Commit``.

Repos are built by the tests; a file can be served with other bytes than the tree lists
(tampering) or redirected elsewhere, and raw tree entries can be injected (hostile listings).
Every request is recorded in ``hits``.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


@dataclass
class FakeFile:
    content: bytes
    lfs: bool = False
    served: bytes | None = None
    """Bytes the resolve route serves instead of ``content`` (a tampered mirror)."""
    redirect: str | None = None
    """Absolute URL the resolve route redirects to instead of the LFS route."""

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    def pointer(self) -> bytes:
        return (
            b"version https://git-lfs.github.com/spec/v1\n"
            + f"oid sha256:{self.sha256}\nsize {len(self.content)}\n".encode()
        )

    def tree_entry(self, path: str) -> dict[str, Any]:
        entry: dict[str, Any] = {"type": "file", "path": path, "size": len(self.content)}
        if self.lfs:
            pointer = self.pointer()
            entry["oid"] = git_oid(pointer)
            entry["lfs"] = {
                "oid": self.sha256,
                "size": len(self.content),
                "pointerSize": len(pointer),
            }
        else:
            entry["oid"] = git_oid(self.content)
        return entry


@dataclass
class FakeRepo:
    repo_id: str
    files: dict[str, FakeFile]
    extra_tree: list[dict[str, Any]] = field(default_factory=list)
    branches: dict[str, str] = field(default_factory=dict)

    @property
    def commit(self) -> str:
        manifest = json.dumps(
            [self.repo_id, sorted((p, f.sha256, f.lfs) for p, f in self.files.items())],
        ).encode()
        return hashlib.sha1(manifest).hexdigest()

    def tree(self) -> list[dict[str, Any]]:
        entries = [f.tree_entry(p) for p, f in sorted(self.files.items())]
        folders = sorted({p.rsplit("/", 1)[0] for p in self.files if "/" in p})
        listing = [{"type": "directory", "path": d, "oid": "0" * 40, "size": 0} for d in folders]
        return listing + entries + list(self.extra_tree)


class FakeHub:
    """The server; ``endpoint`` is what ``HF_ENDPOINT`` should be set to."""

    def __init__(self, *, page_size: int = 1000) -> None:
        self.repos: dict[str, FakeRepo] = {}
        self.hits: list[tuple[str, str]] = []
        self.page_size = page_size
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return

            def do_GET(self) -> None:
                hub._handle(self, head=False)

            def do_HEAD(self) -> None:
                hub._handle(self, head=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        host, port = self._server.server_address[:2]
        self.endpoint = f"http://{host}:{port}"
        # The LFS "CDN": same server, another host name, so clients see a cross-host redirect
        # exactly as they do to the real hub's cdn-lfs/cas-bridge hosts.
        self.cdn_host = "localhost"
        self.cdn = f"http://{self.cdn_host}:{port}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def add(
        self,
        repo_id: str,
        files: Mapping[str, FakeFile],
        *,
        extra_tree: list[dict[str, Any]] | None = None,
    ) -> FakeRepo:
        repo = FakeRepo(repo_id, dict(files), list(extra_tree or []))
        repo.branches["main"] = repo.commit
        self.repos[repo_id] = repo
        return repo

    def resolve_hits(self, repo_id: str | None = None) -> list[str]:
        prefix = f"/{repo_id}/resolve/" if repo_id else None
        return [
            path
            for _, path in self.hits
            if ("/resolve/" in path and (prefix is None or path.startswith(prefix)))
            or path.startswith("/__lfs/")
        ]

    # --- routing -----------------------------------------------------------------------------

    def _handle(self, req: BaseHTTPRequestHandler, *, head: bool) -> None:
        url = urlsplit(req.path)
        self.hits.append((req.command, url.path))
        parts = [unquote(p) for p in url.path.split("/")[1:]]
        try:
            if parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "revision":
                self._revision(req, parts[2] + "/" + parts[3], parts[5], head=head)
            elif parts[:2] == ["api", "models"] and len(parts) >= 6 and parts[4] == "tree":
                query = parse_qs(url.query)
                self._tree(req, parts[2] + "/" + parts[3], parts[5], query, head=head)
            elif len(parts) >= 5 and parts[2] == "resolve":
                repo = parts[0] + "/" + parts[1]
                path = "/".join(unquote(p) for p in url.path.split("/")[5:])
                self._resolve(req, repo, parts[3], path, head=head)
            elif parts[0] == "__lfs" and len(parts) == 2:
                self._lfs(req, parts[1], head=head)
            else:
                self._send(req, 404, b'{"error": "not found"}', head=head)
        except KeyError:
            self._send(req, 404, b'{"error": "Repository not found"}', head=head)

    def _commit(self, repo: FakeRepo, revision: str) -> str:
        if revision in repo.branches:
            return repo.branches[revision]
        if revision == repo.commit:
            return revision
        raise KeyError(revision)

    def _revision(
        self, req: BaseHTTPRequestHandler, repo_id: str, revision: str, *, head: bool
    ) -> None:
        repo = self.repos[repo_id]
        commit = self._commit(repo, revision)
        siblings = [{"rfilename": p} for p in sorted(repo.files)]
        body = {
            "_id": hashlib.md5(repo_id.encode()).hexdigest()[:24],
            "id": repo_id,
            "modelId": repo_id,
            "sha": commit,
            "private": False,
            "disabled": False,
            "gated": False,
            "tags": [],
            "siblings": siblings,
        }
        self._send(req, 200, json.dumps(body).encode(), head=head)

    def _tree(
        self,
        req: BaseHTTPRequestHandler,
        repo_id: str,
        revision: str,
        query: Mapping[str, list[str]],
        *,
        head: bool,
    ) -> None:
        repo = self.repos[repo_id]
        self._commit(repo, revision)
        listing = repo.tree()
        start = int(query.get("cursor", ["0"])[0])
        page = listing[start : start + self.page_size]
        headers = {}
        if start + self.page_size < len(listing):
            nxt = (
                f"{self.endpoint}/api/models/{repo_id}/tree/{quote(revision, safe='')}"
                f"?recursive=true&cursor={start + self.page_size}"
            )
            headers["Link"] = f'<{nxt}>; rel="next"'
        self._send(req, 200, json.dumps(page).encode(), head=head, headers=headers)

    def _resolve(
        self, req: BaseHTTPRequestHandler, repo_id: str, revision: str, path: str, *, head: bool
    ) -> None:
        repo = self.repos[repo_id]
        commit = self._commit(repo, revision)
        fake = repo.files.get(path)
        if fake is None:
            self._send(req, 404, b'{"error": "Entry not found"}', head=head)
            return
        headers = {"X-Repo-Commit": commit}
        if fake.redirect is not None:
            headers["Location"] = fake.redirect
            self._send(req, 302, b"", head=head, headers=headers)
            return
        if fake.lfs:
            headers |= {
                "ETag": f'"{git_oid(fake.pointer())}"',
                "X-Linked-Etag": f'"{fake.sha256}"',
                "X-Linked-Size": str(len(fake.content)),
                "Location": f"{self.cdn}/__lfs/{fake.sha256}?signature=secret",
            }
            self._send(req, 302, b"", head=head, headers=headers)
            return
        served = fake.content if fake.served is None else fake.served
        headers["ETag"] = f'"{git_oid(fake.content)}"'
        self._send(req, 200, served, head=head, headers=headers)

    def _lfs(self, req: BaseHTTPRequestHandler, sha256: str, *, head: bool) -> None:
        for repo in self.repos.values():
            for fake in repo.files.values():
                if fake.lfs and fake.sha256 == sha256:
                    served = fake.content if fake.served is None else fake.served
                    self._send(req, 200, served, head=head, headers={"ETag": f'"{sha256}"'})
                    return
        self._send(req, 404, b"", head=head)

    @staticmethod
    def _send(
        req: BaseHTTPRequestHandler,
        status: int,
        body: bytes,
        *,
        head: bool,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        req.send_response(status)
        req.send_header("Content-Length", str(len(body)))
        if body[:1] in {b"{", b"["}:
            req.send_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.send_header(key, value)
        req.end_headers()
        if not head:
            req.wfile.write(body)


def serve() -> Iterator[FakeHub]:
    hub = FakeHub()
    try:
        yield hub
    finally:
        hub.close()
