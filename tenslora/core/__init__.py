"""The torch-free facts of the library: the method table, the adapter config, rank regimes, the
job spec, the task and backbone catalog, the metric contract, the pack key, the rank allocator,
the adapter archive and JSON without NaN. The service imports these; nothing here imports torch
(import-linter)."""
