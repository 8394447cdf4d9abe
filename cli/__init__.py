"""The ``tenslora`` command: a thin typer app; each subcommand imports its work lazily."""
