"""Pure ASGI middleware: the security headers of every response, and a hang-up on answers sent
before the request's body arrived (pure ASGI, not ``BaseHTTPMiddleware``: nothing is buffered).
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

#: Sent with every response: no page of this service may be framed (clickjacking), and no
#: response is sniffed into another content type.
SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'; base-uri 'self'; form-action 'self'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
)


class CloseUnfinishedBody:
    """An answer sent before the request's body has fully arrived (401 before an upload, 413,
    an upload refused for its lease) says ``Connection: close``: the server then hangs up
    instead of reading, and throwing away, the rest of a body nobody will use."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not _has_body(scope):
            await self.app(scope, receive, send)
            return
        finished = False

        async def receiving() -> Message:
            nonlocal finished
            message = await receive()
            finished = (finished or message["type"] != "http.request"
                        or not message.get("more_body", False))
            return message

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start" and not finished:
                message = {**message,
                           "headers": [*message.get("headers", []), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receiving, sending)


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


def _has_body(scope: Scope) -> bool:
    for name, value in scope.get("headers", []):
        if name == b"transfer-encoding" or (name == b"content-length" and value.strip() != b"0"):
            return True
    return False
