"""TensLoRA+ analysis: training-time signals (per-mode gradient norms and core spectra), spectrum
statistics, and the HOSVD spectra of trained adapters (tensorly)."""
