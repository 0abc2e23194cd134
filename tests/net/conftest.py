"""A real HTTP server on 127.0.0.1 with misbehaving routes, for the URL fetcher's tests.

Routes (query parameters in brackets):
  /img                       a small PNG-ish body with Content-Length
  /echo                      the request headers, as the body
  /bytes [n]                 n bytes with an honest Content-Length
  /nolength [n]              n bytes, no Content-Length, closed at the end (n=0: endless)
  /chunked [n]               n bytes in chunked encoding
  /lying [declared, n]       Content-Length `declared`, then n bytes
  /drip [every]              an announced 1000-byte body, one byte every `every` s
  /stall                     headers, then nothing
  /drip-headers              the status line, then one header byte every 0.05 s
  /status/<code>             that status with a short body
  /redirect [to, code]       a redirect to `to`
  /loop                      a redirect to itself
  /chain/<n>                 n redirects, then /img
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.quiet_http import QuietHTTPServer

IMAGE_BODY = b"\x89PNG\r\n\x1a\n" + b"backfire-test-image" * 10


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib signature
        pass  # keep test output clean

    def _send(self, status: int, body: bytes, content_type: str = "image/png") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        path = parts.path
        # The client hanging up mid-body is what the cap and deadline tests provoke.
        with suppress(BrokenPipeError, ConnectionResetError):
            self._route(path, query)

    def _route(self, path: str, query: dict[str, str]) -> None:
        n = int(query.get("n", "0"))
        if path == "/img":
            self._send(200, IMAGE_BODY)
        elif path == "/echo":
            self._send(200, str(self.headers).encode(), "text/plain")
        elif path == "/bytes":
            self._send(200, b"x" * n)
        elif path == "/nolength":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            if n:
                self.wfile.write(b"x" * n)
            else:
                for _ in range(10_000):  # "endless": far more than any cap in the tests
                    self.wfile.write(b"x" * 65536)
        elif path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            sent = 0
            while sent < n:
                piece = b"x" * min(4096, n - sent)
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                sent += len(piece)
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/lying":
            self.send_response(200)
            self.send_header("Content-Type", "image/jpeg")
            self.send_header("Content-Length", query["declared"])
            self.send_header("Connection", "close")
            self.end_headers()
            self.close_connection = True
            self.wfile.write(b"x" * n)
        elif path == "/drip":
            every = float(query.get("every", "0.05"))
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            for _ in range(1000):
                self.wfile.write(b"x")
                self.wfile.flush()
                time.sleep(every)
        elif path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.flush()
            time.sleep(5)
        elif path == "/drip-headers":
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            for byte in b"X-Slow: " + b"a" * 200:
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
                time.sleep(0.05)
        elif path.startswith("/status/"):
            self._send(int(path.rsplit("/", 1)[1]), b"nope", "text/plain")
        elif path == "/redirect":
            self.send_response(int(query.get("code", "302")))
            self.send_header("Location", query["to"])
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path == "/loop":
            self.send_response(302)
            self.send_header("Location", "/loop")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif path.startswith("/chain/"):
            left = int(path.rsplit("/", 1)[1])
            self.send_response(302)
            self.send_header("Location", f"/chain/{left - 1}" if left > 1 else "/img")
            self.send_header("Content-Length", "0")
            self.end_headers()
        else:
            self._send(404, b"no such route", "text/plain")


@dataclass(frozen=True)
class LocalServer:
    port: int
    image_body: bytes = IMAGE_BODY

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


@pytest.fixture(scope="session")
def local_server() -> Iterator[LocalServer]:
    server = QuietHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True  # slow routes must not hold up the end of the test run
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield LocalServer(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
