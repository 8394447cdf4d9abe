"""`tenslora token create` and `tenslora db upgrade`: direct database administration."""

from __future__ import annotations

from typing import Annotated

import typer

token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
db_app = typer.Typer(help="The scheduler database.", no_args_is_help=True)


@token_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="admin, submitter or worker")],
    name: Annotated[str, typer.Option(help="who or what holds the token")],
) -> None:
    """Mint a token; it is printed on the last line and never stored in clear."""
    from scheduler.db import Database
    from scheduler.errors import SchedulerError
    from scheduler.migrate import upgrade
    from scheduler.settings import Settings
    from scheduler.tokens import ROLES, create_token

    if role not in ROLES:
        typer.echo(f"error: --role must be one of {', '.join(ROLES)}; got {role!r}", err=True)
        raise typer.Exit(2)
    settings = Settings()
    upgrade(settings.database_url)
    database = Database(settings.database_url)
    try:
        with database.session() as session:
            raw = create_token(session, role, name)
    except SchedulerError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    finally:
        database.dispose()
    typer.echo(f"created {role} token {name!r}; keep it secret, it is not shown again:")
    typer.echo(raw)


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Option(help="target revision")] = "head",
) -> None:
    """Create or migrate the schema at TENSLORA_DATABASE_URL."""
    from scheduler.migrate import upgrade
    from scheduler.settings import Settings

    url = Settings().database_url
    upgrade(url, revision)
    typer.echo(f"database at {_redact(url)} is at revision {revision}")


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
