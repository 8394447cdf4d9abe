"""A saved adapter as one zip: how the worker uploads it and the service and CLI hand it out.

Torch-free (the service imports it). The zip holds the files ``tenslora.save_adapter`` writes at
its top level (and, from the worker, the mode analysis beside them), with fixed timestamps so the
same files always make the same bytes.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Mapping
from pathlib import Path

from tenslora.core.metric_contract import (
    ADAPTER_ANALYSIS_FILE,
    ADAPTER_CONFIG_FILE,
    ADAPTER_WEIGHTS_FILE,
)

#: The files of a saved adapter, in the order they are packed.
ADAPTER_FILES: tuple[str, ...] = (ADAPTER_WEIGHTS_FILE, ADAPTER_CONFIG_FILE)
_EPOCH = (1980, 1, 1, 0, 0, 0)  # the earliest time a zip can record


def pack_adapter(files: Mapping[str, bytes]) -> bytes:
    """A zip of ``files`` (name -> content) at its top level, byte for byte reproducible.

    The weights are stored as they are (they do not compress); the JSON files are deflated.
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as out:
        for name, data in files.items():
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_STORED if name == ADAPTER_WEIGHTS_FILE else (
                zipfile.ZIP_DEFLATED)
            out.writestr(info, data)
    return buffer.getvalue()


def zip_adapter(folder: str | Path) -> bytes:
    """The zip of a folder ``save_adapter`` wrote (with its analysis file, when present)."""
    folder = Path(folder)
    names = [*ADAPTER_FILES, ADAPTER_ANALYSIS_FILE]
    return pack_adapter({n: (folder / n).read_bytes() for n in names if (folder / n).is_file()})


def extract_adapter(archive: bytes, folder: str | Path) -> Path:
    """Unpack an adapter zip into ``folder`` (created); only the adapter's own files are
    written, by their base names, so no entry can land outside ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(io.BytesIO(archive)) as source:
        for info in source.infolist():
            name = Path(info.filename).name
            if name in (*ADAPTER_FILES, ADAPTER_ANALYSIS_FILE) and not info.is_dir():
                (folder / name).write_bytes(source.read(info))
    return folder
