"""One check of every JSON request body, before any route parses it (pure ASGI middleware).

Whatever the route and however deep: every string (keys included) must encode as UTF-8 and hold no
NUL, the document nests at most ``max_depth`` levels, and every number fits a float64. Otherwise
the answer is 422 naming the field, in FastAPI's own shape (``{"detail": [{loc, msg, type}]}``),
and the route never runs, so nothing is stored. Why here and not per model: a lone surrogate
("\\udc00", valid JSON) in any free-form field (a spec, a tag, a result) was stored by SQLite and
then failed every response that carried it; one walk over the document covers every field of
every route, present and future.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.middleware import send_json

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: Digits beyond which an integer cannot fit a float64 (10**309 > 1.8e308); Python's own limit
#: on int() of a string (4,300 digits) would otherwise raise inside the parser.
_MAX_INT_DIGITS = 310


class _TooLarge:
    """A number the parser met that does not fit a float64; reported with its path."""

    def __init__(self, text: str) -> None:
        self.text = text


def _parse_int(text: str) -> int | _TooLarge:
    if len(text.lstrip("-")) > _MAX_INT_DIGITS:
        return _TooLarge(text)
    value = int(text)
    try:
        float(value)
    except OverflowError:
        return _TooLarge(text)
    return value


def _parse_float(text: str) -> float | _TooLarge:
    value = float(text)
    return value if not math.isinf(value) else _TooLarge(text)


@dataclass(frozen=True)
class Problem:
    loc: tuple[str | int, ...]
    msg: str
    type: str

    def as_dict(self) -> dict[str, Any]:
        return {"loc": ["body", *self.loc], "msg": self.msg, "type": self.type}


def _string_problem(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain a NUL character"
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode (it holds a lone UTF-16 surrogate)"
    return None


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _children(value: Any) -> Iterator[tuple[str | int, Any]]:
    if isinstance(value, dict):
        return iter(value.items())
    if isinstance(value, list):
        return enumerate(value)
    return iter(())


def find_problem(document: Any, max_depth: int) -> Problem | None:
    """The first thing in a parsed document that the service refuses (depth-first), or None."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(document, ())]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if (reason := _string_problem(value)) is not None:
                return Problem(path, f"text {reason}", "string_invalid")
        elif isinstance(value, _TooLarge):
            return Problem(path, f"the number {_short(value.text)} does not fit a 64-bit float",
                           "number_too_large")
        elif isinstance(value, dict | list):
            if len(path) >= max_depth:
                return Problem(path, f"the document nests deeper than {max_depth} levels",
                               "too_deep")
            for key, child in _children(value):
                if isinstance(key, str) and (reason := _string_problem(key)) is not None:
                    return Problem((*path, key), f"the key {reason}", "string_invalid")
                stack.append((child, (*path, key)))
    return None


def check_body(body: bytes, max_depth: int, declared_json: bool = True) -> Problem | None:
    """Parse ``body`` as JSON and look for a problem. A body that is not JSON at all is one when
    its Content-Type says JSON; without a Content-Type it is the route's to judge (an upload)."""
    try:
        document = json.loads(body, parse_int=_parse_int, parse_float=_parse_float)
    except RecursionError:
        return Problem((), f"the document nests deeper than {max_depth} levels", "too_deep")
    except ValueError as exc:  # not UTF-8, or not JSON
        if not declared_json:
            return None
        return Problem((), f"the body is not valid JSON: {str(exc)[:200]}", "json_invalid")
    return find_problem(document, max_depth)


def _json_declared(scope: Scope) -> bool | None:
    """True: the Content-Type says JSON; False: another type; None: no Content-Type (FastAPI
    parses such a body as JSON too, so it is checked when it is JSON)."""
    for name, value in scope.get("headers", []):
        if name == b"content-type":
            media = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return None


class JsonBodyCheck:
    """Buffers a JSON body (``BodyLimit``, outside, bounds it), checks it, then replays it."""

    def __init__(self, app: ASGIApp, max_depth: int) -> None:
        self.app = app
        self.max_depth = max_depth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        declared = _json_declared(scope) if scope["type"] == "http" else False
        if declared is False or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        problem = check_body(body, self.max_depth, declared is True) if body else None
        if problem is not None:
            await send_json(send, 422, {"detail": [problem.as_dict()]})
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
