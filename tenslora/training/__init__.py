"""The training runner: ``run_training(spec, sink) -> result``."""

from tenslora.training.loop import run_training

__all__ = ["run_training"]
