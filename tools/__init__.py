"""Developer tools run from the repository root, not installed with the product: the GPU
acceptance check (``tools.gpu_check``, behind ``scripts/gpu-check`` and ``scripts/gpu-bundle``)
and the dashboard's stored sweeps and browser (``tools.dashboard_fixture``, shared by the
dashboard tests and ``scripts/dashboard_screenshots.py``).

Tools may import anything the project has; nothing of the product imports them (lint-imports).
"""
