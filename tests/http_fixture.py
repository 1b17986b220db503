"""A tiny local HTTP file server for download tests: 127.0.0.1, a free port, byte ranges.

Tests must never use the internet, yet the download code has to meet real HTTP: status codes,
``Range`` / ``Content-Range``, connections that break mid-file. This server serves an in-memory
``{url path: bytes}`` table from a background thread and records every request so tests can
assert how the client behaved (e.g. that it resumed with a Range request).
"""

from __future__ import annotations

import re
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


@dataclass
class Served:
    """One request as the server saw it."""

    path: str
    range: str | None
    status: int


@dataclass
class FileServer:
    """Serve ``files`` on 127.0.0.1; use as a context manager.

    Attributes:
        files: URL path (``"/2017/L1C/frh04.csv"``) -> content.
        truncations: URL path -> how many of its next GETs announce the full length but send
            only half of the body and close the connection (a dropped download to resume).
        ignore_range: Answer every request with the whole file and 200, like servers without
            range support.
        requests: Every request served, in order.
    """

    files: dict[str, bytes]
    truncations: dict[str, int] = field(default_factory=dict)
    ignore_range: bool = False
    requests: list[Served] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the server, without trailing slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def ranges(self, path: str) -> list[str | None]:
        """The Range headers of the requests made for ``path``."""
        return [served.range for served in self.requests if served.path == path]

    def record(self, served: Served) -> None:
        with self._lock:
            self.requests.append(served)

    def __enter__(self) -> FileServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def _handler_for(server: FileServer) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to one FileServer's table and options."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base signature)
            """Keep test output quiet."""

        def do_GET(self) -> None:  # noqa: N802 (http.server naming)
            path = self.path.split("?")[0]
            content = server.files.get(path)
            header = self.headers.get("Range")
            if content is None:
                self._reply(path, header, 404, b"not found")
                return
            match = _RANGE.match(header or "")
            start = 0 if match is None or server.ignore_range else int(match.group(1))
            if start >= len(content) > 0:
                server.record(Served(path, header, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(content)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206 if start else 200
            server.record(Served(path, header, status))
            body = content[start:]
            self.send_response(status)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(content) - 1}/{len(content)}")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self._send_body(path, body)

        def _send_body(self, path: str, body: bytes) -> None:
            """The body, or (while truncations remain for ``path``) its first half before hanging up."""
            if server.truncations.get(path, 0) <= 0:
                self.wfile.write(body)
                return
            server.truncations[path] -= 1
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

        def _reply(self, path: str, header: str | None, status: int, body: bytes) -> None:
            server.record(Served(path, header, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
