"""Pure ASGI middleware: the request body limit and the security headers of every response.

Pure ASGI (not ``BaseHTTPMiddleware``) so the body is counted as it streams in, chunked bodies
without a Content-Length included, and nothing is buffered on the way.
"""

from __future__ import annotations

import json
import re
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Sent with every response: no page of this service may be framed (clickjacking), and no
#: response is sniffed into another content type.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'; base-uri 'self'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class BodyTooLarge(HTTPException):
    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, f"the request body is larger than {max_bytes:,} bytes "
                              "(TENSLORA_MAX_BODY_MB)")


class BodyLimit:
    """413 for a body over ``max_bytes``: at once when Content-Length says so, else as soon as
    the count of received bytes passes it (the route never sees the rest). ``own_limits``: paths
    (regular expressions) whose route reads its body against a limit of its own (an upload)."""

    def __init__(
        self, app: ASGIApp, max_bytes: int, own_limits: tuple[re.Pattern[str], ...] = ()
    ) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.own_limits = own_limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or any(p.match(scope["path"]) for p in self.own_limits):
            await self.app(scope, receive, send)
            return
        max_bytes = self.max_bytes
        declared = _content_length(scope)
        if declared is not None and declared > max_bytes:
            await _send_error(send, BodyTooLarge(max_bytes))
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)
            return message

        async def watching_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, watching_send)
        except BodyTooLarge as exc:
            # Raised where the app reads the body; FastAPI's routes turn it into the 413
            # themselves, anything that lets it through gets it here.
            if started:
                raise
            await _send_error(send, exc)


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, with_headers)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


async def _send_error(send: Send, exc: HTTPException) -> None:
    # The rest of an oversized body is never read: the connection cannot be reused.
    await send_json(send, exc.status_code, {"detail": exc.detail}, close=True)


async def send_json(send: Send, status: int, content: Any, close: bool = False) -> None:
    """A whole JSON response, from middleware that answers before (instead of) the app."""
    body = json.dumps(content).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
