"""Assembles the ``tenslora`` command. Subcommand modules keep heavy imports inside functions."""

from __future__ import annotations

import typer

from cli import admin_cmd, methods_cmd, serve_cmd, sweep_cmd

app = typer.Typer(
    name="tenslora",
    help="TensLoRA adapters, training runs and the ablation scheduler.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """TensLoRA adapters, training runs and the ablation scheduler."""


app.command("methods")(methods_cmd.methods)
app.command("serve")(serve_cmd.serve)
app.add_typer(admin_cmd.token_app, name="token")
app.add_typer(admin_cmd.db_app, name="db")
app.add_typer(sweep_cmd.sweep_app, name="sweep")
app.command("results")(sweep_cmd.results)


def main() -> None:
    app(prog_name="tenslora")
