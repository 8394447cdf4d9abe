"""`tenslora analyze ID_OR_DIR`: the HOSVD mode spectra of a trained adapter.

A folder written by ``tenslora.save_adapter`` is read directly; a job ID's adapter is downloaded
first, as ``tenslora job adapter`` does.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cli.scheduler_port import Token, Url

if TYPE_CHECKING:
    from tenslora.analysis.hosvd import AdapterSpectra


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def analyze(
    source: Annotated[
        str, typer.Argument(metavar="ID_OR_DIR", help="a job ID, or a save_adapter folder")
    ],
    as_json: Annotated[bool, typer.Option("--json", help="print JSON instead of tables")] = False,
    url: Url = None,
    token: Token = None,
) -> None:
    """Per mode of every adapter tensor: SVD entropy, top-1 energy, effective rank, and the
    Tucker ranks that keep 90 % of each mode's energy (for a LoRA: for all 7 constructions).

    A job ID's adapter is downloaded first (from --url, or the local database)."""
    folder = Path(source)
    if folder.is_dir():
        result = _analyse(folder)
    elif source.isdigit():
        import tempfile

        from cli.job_cmd import fetch_adapter

        with tempfile.TemporaryDirectory(prefix="tenslora-adapter-") as scratch:
            result = _analyse(fetch_adapter(int(source), Path(scratch), url, token))
    else:
        raise _fail(f"{source} is neither a folder nor a job ID")
    if as_json:
        typer.echo(result.to_json())
        return
    print_spectra(result)


def _analyse(folder: Path) -> AdapterSpectra:
    from tenslora.analysis.hosvd import adapter_mode_spectra

    try:
        return adapter_mode_spectra(folder)
    except (FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None
def print_spectra(result: AdapterSpectra) -> None:
    """One rich table per construction: its modes, and the ranks that keep the energy."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(Console().width, 100))
    own = "LoRA" if result.method == "lora" else "this adapter"
    console.print(
        f"[bold]{result.method}[/] ({result.factorization}, ranks "
        f"{', '.join(map(str, result.ranks))}) on d_model={result.backbone['d_model']}, "
        f"{result.backbone['n_layers']} layers, {result.backbone['n_heads']} heads: "
        f"{result.adapter_parameters:,} parameters"
    )
    kept = f"{100 * result.energy_kept:g}%"
    for construction in result.constructions:
        share = 100 * construction.tucker_parameters / result.adapter_parameters
        ranks = ", ".join(map(str, construction.tucker_ranks.values()))
        table = Table(
            title=f"{construction.method} ({len(construction.tensors)} tensor(s))",
            caption=f"Tucker ranks {ranks} keep {kept}: {construction.tucker_parameters:,} "
            f"params, {share:.1f}% of {own}",
            title_justify="left",
            caption_justify="left",
        )
        for column in ("mode", "size", "entropy (norm)", "top-1 energy", "eff. rank",
                       f"rank @ {kept}"):
            table.add_column(column, justify="left" if column == "mode" else "right")
        for row in construction.mode_summary():
            table.add_row(row["mode"], str(row["size"]), _number(row["entropy_norm"]),
                          _number(row["top1_energy"]), _number(row["effective_rank"], 2),
                          str(row["rank_kept"]))
        console.print(table)


def _number(value: float, digits: int = 3) -> str:
    return "-" if value != value else f"{value:.{digits}f}"  # NaN: an all-zero tensor
