"""Request body cap, enforced while the body streams in (pure ASGI, outside every route).

`Content-Length` above the cap is refused before reading a byte; a body that grows past the cap
(chunked, or longer than its header claims) is cut off as soon as it does, so at most one more
network chunk than the cap is ever read.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service.problems import MEDIA_TYPE, problem
from workers.errors import RequestTooLarge


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
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = self.max_bytes + 1
                if declared > self.max_bytes:
                    await _send_problem(send, self._too_large(), scope.get("path"))
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise self._too_large()
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
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
