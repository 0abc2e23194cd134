"""Real uvicorn processes and the CLI: rate limit shared by 2 API processes, the body cap over
the wire (chunked and lying Content-Length), signed webhooks, `backfire apikey` and
`backfire score --queue`."""

from __future__ import annotations

import csv
import http.server
import json
import socket
import subprocess
import sys
import threading

import httpx

from tests.conftest import BLUE, RED, image_bytes
from tests.support.infra import REPO, Api, env_for, wait_for
from workers.notify.webhooks import SIGNATURE_HEADER, verify
from workers.store import open_database


def _cli(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workers.cli", *args], cwd=REPO, env=env_for(settings),
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_rate_limit_across_two_api_processes_and_body_cap(qsettings, tmp_path):
    settings = qsettings.model_copy(update={"rate_limit_per_minute": 6})
    open_database(settings)  # migrate once before two processes start
    made = _cli(settings, "apikey", "create", "--name", "rl")
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip()
    assert key.startswith("bf_") and "store it now" in made.stderr
    apis = [Api(settings, tmp_path / f"api{i}.log").start() for i in range(2)]
    try:
        h = {"Authorization": f"Bearer {key}"}
        codes = [httpx.get(f"{apis[i % 2].url}/v1/posts", headers=h).status_code for i in range(6)]
        assert codes == [200] * 6
        r = httpx.get(f"{apis[0].url}/v1/posts", headers=h)  # limit + 1, on either process
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["code"] == "rate-limited"
        assert httpx.get(f"{apis[1].url}/v1/posts", headers=h).status_code == 429

        # Chunked body over the cap: 413, and the server stops reading early.
        cap = settings.api_max_body_bytes

        def chunks():
            for _ in range(cap // 65536 + 100):
                yield b"\0" * 65536

        other = _cli(settings, "apikey", "create", "--name", "big").stdout.strip()
        r = httpx.post(
            f"{apis[1].url}/v1/posts", content=chunks(), timeout=30,
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {other}"},
        )  # fmt: skip
        assert r.status_code == 413
        # A Content-Length over the cap is refused before the body is sent.
        with socket.create_connection(("127.0.0.1", apis[1].port), timeout=10) as s:
            s.sendall(
                b"POST /v1/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {cap * 3}\r\n\r\n".encode()
            )
            head = s.recv(4096).decode()
        assert head.startswith("HTTP/1.1 413")
        # A Content-Length that lies low: never a 5xx, never accepted.
        with socket.create_connection(("127.0.0.1", apis[0].port), timeout=10) as s:
            s.sendall(
                b"POST /v1/posts HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 10\r\n\r\n" + b"{" * (1024 * 1024)
            )
            head = s.recv(4096).decode()
        status = int(head.split()[1])
        assert 400 <= status < 500
    finally:
        for a in apis:
            a.stop()
    revoked = _cli(settings, "apikey", "revoke", key)
    assert revoked.returncode == 0 and "revoked 1" in revoked.stderr
    listed = _cli(settings, "apikey", "list").stdout
    assert "rl" in listed and "revoked" in listed and key.split("_")[2] not in listed


class _Receiver(http.server.BaseHTTPRequestHandler):
    got: list[tuple[dict[str, str], bytes]] = []
    fail_first = 1

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if _Receiver.fail_first > 0:  # the first attempt fails: delivery must retry
            _Receiver.fail_first -= 1
            self.send_response(503)
        else:
            _Receiver.got.append((dict(self.headers), body))
            self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_signed_webhook_with_retry_and_score_queue(qsettings, worker_factory, tmp_path):
    from fastapi.testclient import TestClient

    from service.app import create_app

    settings = qsettings.model_copy(update={"webhook_backoff_s": 0.5})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    callback = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        with TestClient(create_app(settings)) as client:
            from workers.store.keys import create_key

            auth = {"Authorization": f"Bearer {create_key(open_database(settings), 'w')}"}
            worker_factory(settings)
            r = client.post(
                "/v1/posts", headers=auth,
                files={"image": ("a.jpg", image_bytes(RED), "image/jpeg")},
                data={"caption": "Free delivery", "callback_url": callback},
            )  # fmt: skip
            assert r.status_code == 202
            post_id = r.json()["id"]
            wait_for(lambda: _Receiver.got, 90, "webhook delivery")
            headers, body = _Receiver.got[0]
            assert verify("test-secret", body, headers[SIGNATURE_HEADER])
            assert not verify("wrong-secret", body, headers[SIGNATURE_HEADER])
            payload = json.loads(body)
            assert payload["post"]["id"] == post_id and payload["post"]["status"] == "done"
            wait_for(
                lambda: client.get(f"/v1/posts/{post_id}", headers=auth).json()["webhook"]
                == {"status": "delivered", "attempts": 2},
                30, "delivery recorded",
            )  # fmt: skip

        # The batch CLI through the same workers.
        folder = tmp_path / "batch"
        folder.mkdir()
        (folder / "one.jpg").write_bytes(image_bytes(RED))
        (folder / "two.png").write_bytes(image_bytes(BLUE, fmt="PNG"))
        (folder / "bad.jpg").write_bytes(b"%PDF-1.4 nope")
        out = tmp_path / "v.csv"
        run = _cli(settings, "score", str(folder), "--queue", "--hashtag", "t", "--out", str(out))
        assert run.returncode == 1, run.stderr  # bad.jpg fails with a reason; others scored
        rows = {r["post_id"]: r for r in csv.DictReader(out.open())}
        assert set(rows) == {"one", "two", "bad"}
        assert rows["one"]["verdict"] and rows["two"]["verdict"] and not rows["bad"]["verdict"]
    finally:
        server.shutdown()
