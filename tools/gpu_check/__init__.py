"""The GPU acceptance check: ``python -m tools.gpu_check OUT_DIR`` (``scripts/gpu-check``)."""
