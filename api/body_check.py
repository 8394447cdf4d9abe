"""A request body, read within its route's limit and (JSON) checked off the event loop, before
FastAPI parses and validates it (``api.routing.GuardedRoute`` calls these after the token).

Limits are per route, from settings: a sweep may be large (``TENSLORA_MAX_BODY_MB``), a worker's
metrics or result less so (``TENSLORA_MAX_REPORT_KIB``), everything else is small
(``TENSLORA_MAX_SMALL_BODY_KIB``); the adapter upload reads its zip against its own limit. A body
is counted as it arrives (chunked ones too) and refused with 413 the moment it passes the limit.

Whatever the route and however deep, a JSON body must pass ``scheduler.json_check`` (valid
Unicode, no NUL, nesting, numbers within a float64), or the answer is 422 naming the field in
FastAPI's own shape and the route never runs. Bodies over ``INLINE_BYTES`` are checked in the
thread pool; FastAPI then takes the document parsed here instead of parsing it again on the loop.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError

from scheduler.errors import TooLarge
from scheduler.json_check import JsonRefused, parse_json
from scheduler.settings import Settings

KIB = 1024
MIB = 1024 * 1024
#: A body up to this size is checked on the loop: it takes well under a millisecond, less than
#: the hop to a thread (claims and heartbeats are the hot path).
INLINE_BYTES = 64 * KIB

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


class BodySize(StrEnum):
    """How large a route's body may be; the value is the setting that says it."""

    small = "TENSLORA_MAX_SMALL_BODY_KIB"
    report = "TENSLORA_MAX_REPORT_KIB"
    sweep = "TENSLORA_MAX_BODY_MB"


def body_size(size: BodySize) -> Callable[[Endpoint], Endpoint]:
    """Declares a route's body limit (``BodySize.small`` when a route declares none)."""

    def declare(endpoint: Endpoint) -> Endpoint:
        endpoint.body_size = size  # type: ignore[attr-defined]
        return endpoint

    return declare


def body_size_of(endpoint: Callable[..., Any]) -> BodySize:
    return getattr(endpoint, "body_size", BodySize.small)


def limit_bytes(settings: Settings, size: BodySize) -> int:
    """The route's limit; none exceeds ``TENSLORA_MAX_BODY_MB``."""
    ceiling = int(settings.max_body_mb * MIB)
    own = {
        BodySize.small: settings.max_small_body_kib * KIB,
        BodySize.report: settings.max_report_kib * KIB,
        BodySize.sweep: ceiling,
    }[size]
    return min(own, ceiling)


def body_too_large(size: BodySize, max_bytes: int, measured: int | None) -> TooLarge:
    over = "larger than" if measured is None else f"{measured:,} bytes, over"
    return TooLarge(f"the request body is {over} {max_bytes:,} bytes, this call's limit "
                    f"({size.value})")


async def read_body(
    request: Request, max_bytes: int, refuse: Callable[[int | None], Exception]
) -> bytes:
    """The whole body, or ``refuse(size)`` raised as soon as it is known to pass ``max_bytes``
    (``size``: the declared Content-Length, or None while a body streams in)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise refuse(int(declared))
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_bytes:
            raise refuse(None)
        chunks.append(chunk)
    body = b"".join(chunks)
    # Starlette's own cache of the body: request.body(), .json() and .form() read it from here.
    request._body = body
    return body


async def check_json(request: Request, body: bytes, settings: Settings) -> None:
    """422 (FastAPI's shape) for a JSON body that breaks a rule of ``scheduler.json_check``, 413
    for one with more values than ``TENSLORA_MAX_JSON_VALUES``.

    A body is JSON when its Content-Type says so, or when it has none and parses as JSON (a
    body without one that is not JSON is the route's to judge)."""
    declared = _json_declared(request)
    if declared is False or not body:
        return
    try:
        limits = (settings.max_json_depth, settings.max_json_values)
        if len(body) <= INLINE_BYTES:
            document = parse_json(body, *limits)
        else:
            document = await run_in_threadpool(parse_json, body, *limits)
    except JsonRefused as refused:
        problem = refused.problem
        if declared is None and problem.type == "json_invalid":
            return
        raise RequestValidationError(
            [{"loc": ("body", *problem.loc), "msg": problem.msg, "type": problem.type}]
        ) from None
    if declared:
        request._json = document  # what FastAPI's request.json() returns: parsed once, here


def _json_declared(request: Request) -> bool | None:
    """True: the Content-Type says JSON; False: another type; None: no Content-Type."""
    content_type = request.headers.get("content-type")
    if content_type is None:
        return None
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")
