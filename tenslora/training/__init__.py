"""The training runner: ``run_training(spec, sink) -> result`` for one job, and
``run_pack(specs, sinks) -> results`` for k jobs over one frozen backbone."""

from tenslora.training.jobs import JobResult, JobSink, TrainingFailed
from tenslora.training.loop import run_pack, run_training

__all__ = ["JobResult", "JobSink", "TrainingFailed", "run_pack", "run_training"]
