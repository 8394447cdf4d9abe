"""A well-formed adapter zip of any size, for upload tests and bench/upload_contention.py: its
weights are random bytes (incompressible, so the zip is as large as asked) behind a real
safetensors header, beside an ``adapter_config.json`` the service accepts."""

from __future__ import annotations

import io
import json
import os
import zipfile

from tenslora.core.metric_contract import ADAPTER_CONFIG_FILE, ADAPTER_WEIGHTS_FILE

__all__ = ["adapter_zip_of"]


def adapter_zip_of(size_bytes: int) -> bytes:
    """A zip of about ``size_bytes``: one uint8 tensor of that many random bytes."""
    header = json.dumps(
        {"w": {"dtype": "U8", "shape": [size_bytes], "data_offsets": [0, size_bytes]}}
    ).encode()
    weights = len(header).to_bytes(8, "little") + header + os.urandom(size_bytes)
    config = json.dumps({"config": {}, "backbone": {}}).encode()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr(ADAPTER_WEIGHTS_FILE, weights)
        archive.writestr(ADAPTER_CONFIG_FILE, config)
    return buffer.getvalue()
