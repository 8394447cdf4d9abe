"""An uploaded adapter zip, checked without torch and re-packed with exactly the two adapter files.

The zip must hold ``adapter_model.safetensors`` (a safetensors file) and ``adapter_config.json``
(with its ``config`` and ``backbone``), optionally ``adapter_analysis.json`` (the mode analysis,
``scheduler.adapter_analysis``). What the uploader says about its zip is checked before it costs
anything: the member count and the size of the zip's directory (from its end record, before the
directory is parsed), the unpacked sizes (read no further than the limit). Every JSON inside is
held to ``scheduler.json_check``.
"""

from __future__ import annotations

import hashlib
import io
import posixpath
import struct
import zipfile
from dataclasses import dataclass
from typing import Any

from scheduler import adapter_analysis
from scheduler.errors import InvalidInput, TooLarge
from scheduler.json_check import parse_json
from scheduler.settings import Settings
from tenslora.core.archive import ADAPTER_FILES, pack_adapter
from tenslora.core.metric_contract import (
    ADAPTER_ANALYSIS_FILE,
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
)

LIMIT_SETTING = "TENSLORA_MAX_ADAPTER_MB"
MEMBERS_SETTING = "TENSLORA_MAX_ADAPTER_MEMBERS"
#: Bytes of the zip's directory allowed per member: a 46-byte record, the name and the extras
#: of any zip tool fit with room to spare; more is a directory of hidden members.
DIRECTORY_BYTES_PER_MEMBER = 1024
_END = struct.Struct("<4s4H2LH")  # end of central directory record
_END64_LOCATOR = struct.Struct("<4sLQL")
_END64 = struct.Struct("<4sQ2H2L4Q")


@dataclass(frozen=True)
class ArchiveLimits:
    max_bytes: int  #: the zip, and its unpacked files together
    max_members: int
    max_json_depth: int
    max_json_values: int


@dataclass(frozen=True)
class AdapterArchive:
    """A checked upload: the zip to store and serve, the analysis it carried (None when it had
    none or it was left out), and why one was left out."""

    archive: bytes
    analysis: dict[str, Any] | None
    analysis_note: str | None = None

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.archive).hexdigest()


def archive_limits(settings: Settings) -> ArchiveLimits:
    return ArchiveLimits(int(settings.max_adapter_mb * 2**20), settings.max_adapter_members,
                         settings.max_json_depth, settings.max_json_values)


def too_large(size: int | None, max_bytes: int, what: str = "the adapter upload") -> TooLarge:
    """413 naming the size (``None``: not known, only that it is over the limit)."""
    measured = "over the limit" if size is None else f"{size / 2**20:.2f} MiB"
    return TooLarge(
        f"{what} is {measured}; this service keeps adapters up to "
        f"{max_bytes / 2**20:.2f} MiB ({LIMIT_SETTING}). The job's result is kept without it."
    )


def read_archive(data: bytes, limits: ArchiveLimits) -> AdapterArchive:
    """Check an uploaded zip and re-pack it with exactly the two adapter files."""
    if len(data) > limits.max_bytes:
        raise too_large(len(data), limits.max_bytes)
    _check_directory(data, limits.max_members)
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [info for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, ValueError):
        raise InvalidInput(_expected("the body is not a zip archive")) from None
    entries = {posixpath.basename(info.filename): info for info in members}
    missing = [name for name in ADAPTER_FILES if name not in entries]
    if missing:
        raise InvalidInput(_expected(f"the zip lacks {', '.join(missing)}"))
    wanted = [n for n in (*ADAPTER_FILES, ADAPTER_ANALYSIS_FILE) if n in entries]
    unpacked = sum(entries[name].file_size for name in wanted)
    if unpacked > limits.max_bytes:
        raise too_large(unpacked, limits.max_bytes, "the unpacked adapter")
    files = {name: _read(archive, entries[name], limits.max_bytes) for name in wanted}
    _check_config(files[ADAPTER_CONFIG_FILE], limits)
    _check_safetensors(files[ADAPTER_WEIGHTS_FILE], limits)
    analysis, note = None, None
    if ADAPTER_ANALYSIS_FILE in files:
        analysis, note = adapter_analysis.checked(
            files[ADAPTER_ANALYSIS_FILE], limits.max_json_depth, limits.max_json_values
        )
    served = {name: files[name] for name in ADAPTER_FILES}
    return AdapterArchive(pack_adapter(served), analysis, note)


def _check_directory(data: bytes, max_members: int) -> None:
    """422 for a zip whose end record states more members (or a larger directory) than
    ``max_members`` allow: ``zipfile`` would parse every entry of the directory first."""
    members, directory_bytes = _directory(data)
    if members > max_members:
        raise InvalidInput(_expected(
            f"the zip holds {members:,} files; at most {max_members:,} are read "
            f"({MEMBERS_SETTING})"))
    if directory_bytes > max_members * DIRECTORY_BYTES_PER_MEMBER:
        raise InvalidInput(_expected(
            f"the zip's directory is {directory_bytes:,} bytes, more than {max_members:,} "
            f"files need ({MEMBERS_SETTING})"))


def _directory(data: bytes) -> tuple[int, int]:
    """(members, bytes) of the zip's directory, as its end record states them (zip64 too)."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - _END.size - 0xFFFF))
    if at < 0 or len(data) - at < _END.size:
        raise InvalidInput(_expected("the body is not a zip archive"))
    fields = _END.unpack_from(data, at)
    members, size = fields[4], fields[5]
    if members == 0xFFFF or size == 0xFFFFFFFF:
        start = at - _END64_LOCATOR.size
        locator = _END64_LOCATOR.unpack_from(data, start) if start >= 0 else (b"",)
        record_at = locator[2] if locator[0] == b"PK\x06\x07" else -1
        if not 0 <= record_at <= len(data) - _END64.size:
            raise InvalidInput(_expected("the zip's zip64 directory record cannot be found"))
        record = _END64.unpack_from(data, record_at)
        if record[0] != b"PK\x06\x06":
            raise InvalidInput(_expected("the zip's zip64 directory record cannot be found"))
        members, size = record[7], record[8]
    return members, size


def _expected(problem: str) -> str:
    return (
        f"{problem}; upload a zip holding {ADAPTER_WEIGHTS_FILE} and {ADAPTER_CONFIG_FILE} "
        "(the folder tenslora.save_adapter writes)"
    )


def _read(archive: zipfile.ZipFile, info: zipfile.ZipInfo, max_bytes: int) -> bytes:
    # The sizes in a zip's directory are the uploader's word: read no more than the limit.
    try:
        with archive.open(info) as member:
            data = member.read(max_bytes + 1)
    except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as error:
        raise InvalidInput(_expected(f"{info.filename} cannot be unpacked ({error})")) from None
    if len(data) > max_bytes:
        raise too_large(len(data), max_bytes, "the unpacked adapter")
    return data


def _json_object(data: bytes, name: str, limits: ArchiveLimits) -> dict[str, Any]:
    value = parse_json(data, limits.max_json_depth, limits.max_json_values, name)
    if not isinstance(value, dict):
        raise InvalidInput(_expected(f"{name} must hold a JSON object"))
    return value


def _check_config(data: bytes, limits: ArchiveLimits) -> None:
    config = _json_object(data, ADAPTER_CONFIG_FILE, limits)
    if not isinstance(config.get("config"), dict) or not isinstance(config.get("backbone"), dict):
        raise InvalidInput(_expected(f"{ADAPTER_CONFIG_FILE} lacks its 'config' and 'backbone'"))


def _check_safetensors(data: bytes, limits: ArchiveLimits) -> None:
    """A safetensors file starts with the length of its JSON header (8 bytes, little-endian)."""
    header_length = int.from_bytes(data[:8], "little") if len(data) >= 8 else -1
    if not 0 < header_length <= len(data) - 8:
        raise InvalidInput(_expected(f"{ADAPTER_WEIGHTS_FILE} is not a safetensors file"))
    _json_object(data[8 : 8 + header_length], f"the header of {ADAPTER_WEIGHTS_FILE}", limits)
