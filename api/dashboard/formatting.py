"""Jinja filters: how times, rates, counts and run configs read on the pages."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from api.dashboard.tables import format_number


def when(value: datetime | str | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def ago(value: datetime | None) -> str:
    """How long before now, e.g. ``12.0 s ago``."""
    if value is None:
        return "-"
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return f"{duration((datetime.now(UTC) - value).total_seconds())} ago"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, float(seconds))
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.3g}"


def count(value: float | None) -> str:
    return "" if value is None else f"{value:,.0f}"


def percent(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}%"


def number(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    return format_number(float(value))


def run_label(config: Mapping[str, Any] | None) -> str:
    """A one-line summary of a job spec: task, method, ranks, tag, seed."""
    if not config:
        return ""
    parts: list[str] = []
    if config.get("kind") == "train":
        adapter = config.get("adapter") or {}
        parts.append(f"{config.get('task')} · {config.get('backbone')}")
        method = adapter.get("method", "lora")
        if method != "lora":
            method += f" {adapter.get('factorization', 'tucker')}"
        parts.append(f"{method} r={adapter.get('ranks')}")
    else:
        parts.append(str(config.get("kind", "job")))
    if config.get("tag"):
        parts.append(str(config["tag"]))
    parts.append(f"seed {config.get('seed', 0)}")
    return " · ".join(parts)


def wall_time(job: Mapping[str, Any]) -> float | None:
    """Seconds from start to finish (or to now while running)."""
    started = job.get("started_at")
    if started is None:
        return None
    finished = job.get("finished_at") or datetime.now(UTC)
    if isinstance(started, str):
        started = datetime.fromisoformat(started)
    if isinstance(finished, str):
        finished = datetime.fromisoformat(finished)
    if started.tzinfo is None:
        started = started.replace(tzinfo=UTC)
    if finished.tzinfo is None:
        finished = finished.replace(tzinfo=UTC)
    return (finished - started).total_seconds()


FILTERS = {
    "when": when,
    "ago": ago,
    "duration": duration,
    "rate": rate,
    "count": count,
    "percent": percent,
    "number": number,
    "run_label": run_label,
    "wall_time": wall_time,
}
