"""Webhook delivery resolves the callback host once and connects to that vetted address: a DNS
answer that changes after the check (rebinding) cannot redirect the POST. In-process, with a
receiver on 127.0.0.1 and a resolver that answers differently on its second call."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Iterator

import pytest

from workers.config import Settings
from workers.notify.webhooks import SIGNATURE_HEADER, deliver, verify
from workers.store import open_database
from workers.store import posts as repo

HOST = "hooks.example.test"


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.got.append((self.path, dict(self.headers), body))
        self.send_response(410 if self.path == "/gone" else 204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[int]:
    _Receiver.got.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
def rebinding_dns(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """HOST resolves to 127.0.0.1 the first time, to 127.0.0.2 (nothing listens) afterwards."""
    real = socket.getaddrinfo
    calls: list[str] = []

    def fake(host, port, *args, **kwargs):  # type: ignore[no-untyped-def]
        if host != HOST:
            return real(host, port, *args, **kwargs)
        calls.append(host)
        ip = "127.0.0.1" if len(calls) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return calls


def _view(settings: Settings, callback: str) -> repo.PostView:
    db = open_database(settings)
    row, _ = repo.create_post(
        db, repo.NewPost(owner="k", media_sha256="0" * 64, caption="hi", callback_url=callback)
    )
    view = repo.get_by_seq(db, row.seq)
    assert view is not None
    return view


def test_webhook_posts_to_the_address_it_vetted(settings, receiver, rebinding_dns):
    s = settings.model_copy(update={"webhook_secret": "s3", "allow_private_network": True})
    view = _view(s, f"http://{HOST}:{receiver}/hook?x=1")
    outcome = deliver(s, view)
    assert outcome.ok and outcome.status == 204, outcome
    assert rebinding_dns == [HOST]  # one lookup; a second would have answered 127.0.0.2
    path, headers, body = _Receiver.got[0]
    assert path == "/hook?x=1" and headers["Host"] == f"{HOST}:{receiver}"
    assert verify("s3", body, headers[SIGNATURE_HEADER])
    assert json.loads(body)["post"]["id"] == view.post.id

    rebinding_dns.clear()  # each attempt resolves afresh (once)
    gone = deliver(s, _view(s, f"http://{HOST}:{receiver}/gone"))
    assert not gone.ok and gone.status == 410 and gone.retry is False  # a 4xx: do not retry


def test_webhook_to_a_private_address_is_refused(settings, receiver, rebinding_dns):
    s = settings.model_copy(update={"webhook_secret": "s3", "allow_private_network": False})
    outcome = deliver(s, _view(s, f"http://{HOST}:{receiver}/hook"))
    assert not outcome.ok and outcome.retry is False
    assert "127.0.0.1" in (outcome.error or "") and "loopback" in (outcome.error or "")
    assert _Receiver.got == []
