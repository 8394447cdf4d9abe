"""What one request may store: name lengths, result size, error text. Values come from
``Settings`` (``TENSLORA_MAX_*``; defaults in docs/api.md); the checks raise ``InvalidInput``
(422) naming the field, before anything is written.

What any JSON body must be (valid Unicode, no NUL, nesting, numbers that fit a float64) is
checked once for every route, in ``scheduler.json_check`` (called by ``api.body_check``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from scheduler.errors import InvalidInput
from scheduler.models import NAME_LENGTH


@dataclass(frozen=True)
class Limits:
    name_length: int = NAME_LENGTH
    metric_name_length: int = NAME_LENGTH
    result_entries: int = 1000
    error_bytes: int = 64 * 1024


def check_length(field: str, value: str | None, limit: int) -> None:
    if value is not None and len(value) > limit:
        raise InvalidInput(f"{field}: at most {limit} characters; got {len(value):,}")


def check_names(field: str, names: Iterable[str], limit: int) -> None:
    for name in names:
        check_length(f"{field} {name[:40]!r}...", name, limit)


def check_count(field: str, count: int, limit: int) -> None:
    if count > limit:
        raise InvalidInput(f"{field}: at most {limit:,} entries; got {count:,}")


def truncate_text(text: str, max_bytes: int) -> str:
    """``text`` cut to at most ``max_bytes`` of UTF-8 (on a character boundary), saying so."""
    data = text.encode("utf-8")
    if len(data) <= max_bytes:
        return text
    marker = f"\n[... {len(data) - max_bytes:,} more bytes truncated]"
    keep = max(0, max_bytes - len(marker.encode("utf-8")))
    return data[:keep].decode("utf-8", "ignore") + marker
