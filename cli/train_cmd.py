"""`tenslora train SPEC.yaml`: one training job run locally; result JSON on stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def load_train_spec(path: Path) -> Any:
    """Read and validate a YAML train spec; every problem becomes a message naming the field."""
    import yaml
    from pydantic import ValidationError

    from tenslora.core.job_spec import TrainSpec

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise _fail(f"cannot read spec {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise _fail(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise _fail(f"{path} must hold a mapping (kind, task, backbone, ...), "
                    f"got {type(data).__name__}")
    if data.get("kind", "train") != "train":
        raise _fail(f"{path}: `tenslora train` runs specs of kind 'train', got {data['kind']!r}")
    try:
        return TrainSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(map(str, err['loc'])) or '(spec)'}: {err['msg']}" for err in exc.errors()
        )
        raise _fail(f"invalid spec {path}: {problems}") from None


def train(
    spec_file: Annotated[Path, typer.Argument(metavar="SPEC.yaml", help="a `kind: train` spec")],
    metrics_out: Annotated[
        Path | None,
        typer.Option("--metrics-out", help="write every metric point as a JSON line here"),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda, cuda:1 ... (default: cuda if present)")
    ] = None,
) -> None:
    """Run one training job locally: progress on stderr, the result as JSON on stdout."""
    spec = load_train_spec(spec_file)
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tenslora.training import TrainingFailed, run_training
    from tenslora.training.backbones import BackboneUnavailableError
    from tenslora.training.tasks import HubUnavailableError, MissingDataError

    try:
        out = metrics_out.open("w", encoding="utf-8") if metrics_out else None
    except OSError as exc:
        raise _fail(f"cannot write --metrics-out {metrics_out}: {exc.strerror or exc}") from None

    def sink(points: list[dict[str, Any]]) -> None:
        if out is not None:
            out.writelines(json.dumps(point) + "\n" for point in points)
            out.flush()

    bar = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/"
                   "{task.total} steps"), TextColumn("loss {task.fields[loss]}"),
                   TimeElapsedColumn(), console=Console(stderr=True), transient=False)
    task_id = bar.add_task(f"{spec.task} / {spec.backbone} / {spec.adapter.method}",
                           total=None, loss="-")

    def progress(step: int, total: int, loss: float | None) -> None:
        if loss is None:
            bar.update(task_id, completed=step, total=total)
        else:
            bar.update(task_id, completed=step, total=total, loss=f"{loss:.4f}")

    try:
        with bar:
            result = run_training(spec, sink, device=device, progress=progress)
    except (HubUnavailableError, BackboneUnavailableError, MissingDataError,
            TrainingFailed) as exc:
        raise _fail(str(exc), code=1) from None
    finally:
        if out is not None:
            out.close()
    typer.echo(json.dumps(result, indent=2))
