"""Assembles the ``tenslora`` command. Subcommand modules keep heavy imports inside functions."""

from __future__ import annotations

import typer

from cli import (
    admin_cmd,
    analyze_cmd,
    demo_cmd,
    estimates_cmd,
    job_cmd,
    methods_cmd,
    preset_cmd,
    run_cmd,
    serve_cmd,
    sweep_cmd,
    tasks_cmd,
    train_cmd,
    tune_cmd,
)

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
app.command("train")(train_cmd.train)
app.command("tasks")(tasks_cmd.tasks)
app.add_typer(sweep_cmd.sweep_app, name="sweep")
app.command("results")(sweep_cmd.results)
sweep_cmd.sweep_app.command("preset")(preset_cmd.preset)
sweep_cmd.sweep_app.command("tune")(tune_cmd.tune)
app.command("run")(run_cmd.run)
app.command("demo")(demo_cmd.demo)
app.command("analyze")(analyze_cmd.analyze)
app.add_typer(job_cmd.job_app, name="job")
app.add_typer(estimates_cmd.estimates_app, name="estimates")


def main() -> None:
    app(prog_name="tenslora")
