"""The GPU check's record: sections written to JSON and Markdown after every change.

A section that raises records its error and the next one runs; the files on disk are always a
complete report of what has run so far, so a run cut off by its time limit still leaves figures.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

JSON_NAME = "gpu-check.json"
MARKDOWN_NAME = "gpu-check.md"

_STARTED = time.monotonic()


def log(message: str) -> None:
    """A progress line with the wall clock and the seconds since the check began."""
    stamp = datetime.now(UTC).strftime("%H:%M:%S")
    print(f"[{stamp} +{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


class Skipped(Exception):
    """Raised inside a section that cannot run here (no GPU, no sweep to compare): not a
    failure."""


@dataclass
class Section:
    key: str
    title: str
    status: str = "running"  # running | ok | failed | skipped
    seconds: float = 0.0
    facts: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    error: str | None = None
    on_change: Callable[[], None] | None = field(default=None, repr=False)

    def fact(self, name: str, value: Any) -> None:
        self.facts[name] = value
        self._changed()

    def row(self, table: str, row: dict[str, Any]) -> None:
        self.tables.setdefault(table, []).append(row)
        self._changed()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self._changed()

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()


class Report:
    """Owns ``OUT_DIR/gpu-check.json`` and ``OUT_DIR/gpu-check.md``; ``flush`` rewrites both."""

    def __init__(self, out_dir: Path, meta: dict[str, Any]) -> None:
        self.out_dir = out_dir
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.meta = meta
        self.sections: list[Section] = []
        self.flush()

    @contextlib.contextmanager
    def section(self, key: str, title: str) -> Iterator[Section]:
        """Runs one section: its error is recorded, never raised, so the others still run."""
        section = Section(key, title, on_change=self.flush)
        self.sections.append(section)
        began = time.monotonic()
        log(f"section {key}: {title}")
        try:
            yield section
            section.status = "ok"
        except Skipped as reason:
            section.status, section.error = "skipped", str(reason)
        except Exception as error:  # a section's failure is a figure of the check, not its end
            section.status = "failed"
            section.error = f"{type(error).__name__}: {error}"
            section.note("".join(traceback.format_exception(error)[-6:]))
        finally:
            section.seconds = round(time.monotonic() - began, 1)
            log(f"section {key}: {section.status} in {section.seconds:.1f}s"
                + (f" ({section.error})" if section.error else ""))
            self.flush()

    def flush(self) -> None:
        document = {
            "meta": self.meta,
            "sections": {s.key: _section_json(s) for s in self.sections},
        }
        _write(self.out_dir / JSON_NAME, json.dumps(_clean(document), indent=1, default=str))
        _write(self.out_dir / MARKDOWN_NAME, render_markdown(self.meta, self.sections))


def _section_json(section: Section) -> dict[str, Any]:
    return {
        "title": section.title, "status": section.status, "seconds": section.seconds,
        "error": section.error, "facts": section.facts, "tables": section.tables,
        "notes": section.notes,
    }


def _clean(value: Any) -> Any:
    """JSON has no NaN or infinity: they become strings, so the file stays strict JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def _write(path: Path, text: str) -> None:
    """Whole files only: a reader (or a cut-off run) never sees half of one."""
    partial = path.with_suffix(path.suffix + ".part")
    partial.write_text(text)
    partial.replace(path)


def render_markdown(meta: dict[str, Any], sections: list[Section]) -> str:
    lines = ["# GPU check", ""]
    lines += [f"- {name}: {_cell(value)}" for name, value in meta.items()]
    for section in sections:
        lines += ["", f"## {section.key}. {section.title}", "",
                  f"**{section.status}** in {section.seconds:.1f} s"
                  + (f": {section.error}" if section.error else "")]
        if section.facts:
            lines.append("")
            lines += [f"- {name}: {_cell(value)}" for name, value in section.facts.items()]
        for name, rows in section.tables.items():
            lines += ["", f"{name}:", "", *_table(rows)]
        for note in section.notes:
            lines += ["", "```", note.rstrip(), "```"]
    return "\n".join(lines) + "\n"


def _table(rows: list[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    out = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    out += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return out


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list | tuple):
        return ", ".join(_cell(v) for v in value)
    return str(value).replace("|", "\\|").replace("\n", " ")
