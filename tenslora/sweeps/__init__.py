"""Torch-free sweep documents: deep merges and dotted paths, and the paper's ablations as
presets."""
