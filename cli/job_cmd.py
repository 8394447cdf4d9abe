"""`tenslora job adapter ID [--out DIR]`: a succeeded train job's adapter, downloaded and unzipped.

The folder it writes loads with ``tenslora.load_adapter`` onto the job's backbone.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.scheduler_port import Token, Url, call_or_exit, open_scheduler

job_app = typer.Typer(help="Read what a job left behind.", no_args_is_help=True)


def fetch_adapter(job_id: int, out: Path, url: str | None, token: str | None) -> Path:
    """Download job ``job_id``'s adapter into ``out``; a refusal exits with the scheduler's
    reason."""
    from tenslora.core.archive import extract_adapter

    with open_scheduler(url, token) as port:
        archive = call_or_exit(lambda: port.download_adapter(job_id), url)
    return extract_adapter(archive, out)


@job_app.command("adapter")
def adapter(
    job_id: Annotated[int, typer.Argument(metavar="ID", help="a succeeded train job")],
    out: Annotated[
        Path | None, typer.Option("--out", help="folder to write; default ./job-ID-adapter")
    ] = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Download and unzip a train job's adapter (adapter_model.safetensors, adapter_config.json).

    Load it with ``tenslora.load_adapter(backbone, DIR)``; `tenslora analyze DIR` shows its modes.
    """
    folder = fetch_adapter(job_id, out or Path(f"job-{job_id}-adapter"), url, token)
    typer.echo(str(folder))
