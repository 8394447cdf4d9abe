"""The adapters over a torch backbone: factorizations, the adapter, backbone surgery, the adapted
layers, laying an adapter over a model and reading it back, persistence, and packs."""
