"""The HTTP API of the scheduler (FastAPI). Torch-free: ``import api`` must never load torch."""
