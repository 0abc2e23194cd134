"""Request body cap, enforced while the body streams in (pure ASGI, outside every route).

`Content-Length` above the cap is refused before reading a byte; a body that grows past the cap
(chunked, or longer than its header claims) is cut off as soon as it does, so at most one more
network chunk than the cap is ever read.

Cutting the body off is not enough by itself: once a response is complete, the server discards
whatever else the client sends on a keep-alive connection, for as long as the client sends it
(an endless chunked upload was read at 700 MB/s after its 413). So every answer given while an
unbounded body is still coming, the 413 included, says `Connection: close`, and the server
stops reading that connection once the answer is out.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import MEDIA_TYPE, problem
from workers.errors import RequestTooLarge

log = logging.getLogger("backfire.api")


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _too_large(self) -> RequestTooLarge:
        mb = self.max_bytes / (1024 * 1024)
        return RequestTooLarge(f"The request body is larger than the limit of {mb:g} MB.")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared: int | None = None
        chunked = False
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await _send_problem(send, self._too_large(), scope.get("path"))
                    return
            elif name == b"transfer-encoding":
                chunked = True
        received = 0
        body_done = False
        over = False
        started = False

        async def limited_receive() -> Message:
            nonlocal received, body_done, over
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if not message.get("more_body", False):
                    body_done = True
                if received > self.max_bytes:
                    over = True
                    log.warning(
                        "%s %s: body cut off at the %d-byte cap after %d bytes; closing",
                        scope.get("method"), scope.get("path"), self.max_bytes, received,
                    )  # fmt: skip
                    raise self._too_large()
            elif message["type"] == "http.disconnect":
                body_done = True
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                # Over the cap, or a chunked body nobody read to its end (a 401 answered
                # before reading, say): the rest is unbounded, so it is not read at all.
                if over or (chunked and not body_done):
                    headers = [(k, v) for k, v in message.get("headers", ()) if k != b"connection"]
                    message = {**message, "headers": [*headers, (b"connection", b"close")]}
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except RequestTooLarge as e:
            if started:
                raise
            await _send_problem(send, e, scope.get("path"))


async def _send_problem(send: Send, exc: RequestTooLarge, path: Any) -> None:
    body = json.dumps(problem(exc.http_status, exc.code, exc.message, path)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.http_status,
            "headers": [
                (b"content-type", MEDIA_TYPE.encode()),
                (b"content-length", str(len(body)).encode()),
                # The client may still be sending: tell it this connection is over.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
