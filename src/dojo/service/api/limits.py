"""Request body limits (413) before a route reads anything.

A declared ``Content-Length`` over the limit is answered at once. A body without one (chunked)
is read up to the limit and then replayed, except on upload routes, which stream and count
themselves (and clean up after themselves).
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

UPLOAD_ROUTES = re.compile(r"^/v1/(datasets/[^/]+/files|jobs/[^/]+/checkpoints)/?$")


class BodyLimit:
    def __init__(self, app: ASGIApp, max_json_bytes: int, max_upload_bytes: int) -> None:
        self.app = app
        self.max_json = max_json_bytes
        self.max_upload = max_upload_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["method"] == "POST" and bool(UPLOAD_ROUTES.match(scope["path"]))
        limit = self.max_upload if upload else self.max_json
        length = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if length is not None:
            if not length.isdigit():
                await _reply(send, 400, "Content-Length is not a whole number.")
                return
            if int(length) > limit:
                await _reply(
                    send,
                    413,
                    f"Request body of {int(length)} bytes is over the limit of {limit} bytes.",
                    limit=limit,
                )
                return
            await self.app(scope, receive, send)
            return
        if upload or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > limit:
                await _reply(
                    send, 413, f"Request body is over the limit of {limit} bytes.", limit=limit
                )
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


async def _reply(send: Send, status: int, detail: str, **extra: Any) -> None:
    body = json.dumps({"detail": detail, **extra}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
