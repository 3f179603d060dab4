"""A real JWKS endpoint on 127.0.0.1 that can be made slow and counts its fetches."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class JwksEndpoint:
    body: str
    delay: float = 0.0
    status: int = 200
    fetches: int = 0
    url: str = ""
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self) -> None:
        with self._lock:
            self.fetches += 1


@contextmanager
def serve_jwks(body: str, *, delay: float = 0.0) -> Iterator[JwksEndpoint]:
    endpoint = JwksEndpoint(body, delay)

    class _Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            endpoint.count()
            time.sleep(endpoint.delay)
            data = endpoint.body.encode()
            self.send_response(endpoint.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    endpoint.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield endpoint
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
