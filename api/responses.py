"""JSON responses that cannot fail on what the database holds.

A value stored before the API refused lone UTF-16 surrogates (SQLite kept them) cannot be encoded
as UTF-8, so the normal serialisers raise. Here such strings are written with U+FFFD in place of
the surrogate instead: the one request still answers, and a claim that hands out such a job does
not fail (and leave the job queued for the next claim to fail on, stalling every worker).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

log = logging.getLogger(__name__)


def scrub_text(text: str) -> str:
    """``text`` with every lone surrogate replaced by U+FFFD (pairs are kept)."""
    return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def scrub(value: Any) -> Any:
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {scrub(key): scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item) for item in value]
    return value


class SafeJSONResponse(JSONResponse):
    """The app's default response class: the fast path, else the scrubbed content."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            log.warning("a response held text that is not valid Unicode; sent with U+FFFD")
            return super().render(scrub(content))


def model_response(model: BaseModel) -> Response:
    """``model`` serialised by pydantic directly (no ``jsonable_encoder`` walk: the hot path)."""
    try:
        return Response(model.model_dump_json(), media_type="application/json")
    except PydanticSerializationError:
        return SafeJSONResponse(model.model_dump(mode="json"))
