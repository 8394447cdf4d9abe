"""`tenslora token create|list|revoke` and `tenslora db upgrade`: direct database administration."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

token_app = typer.Typer(help="API tokens.", no_args_is_help=True)
db_app = typer.Typer(help="The scheduler database.", no_args_is_help=True)


@token_app.command("create")
def create(
    role: Annotated[str, typer.Option(help="admin, submitter or worker")],
    name: Annotated[str, typer.Option(help="who or what holds the token")],
) -> None:
    """Mint a token; it is printed on the last line and never stored in clear."""
    from protocol.vocabulary import ROLES
    from scheduler.tokens import create_token

    if role not in ROLES:
        typer.echo(f"error: --role must be one of {', '.join(ROLES)}; got {role!r}", err=True)
        raise typer.Exit(2)
    with _admin_session() as session:
        raw = create_token(session, role, name)
    typer.echo(f"created {role} token {name!r}; keep it secret, it is not shown again:")
    typer.echo(raw)


@token_app.command("list")
def list_(
    all_: Annotated[bool, typer.Option("--all", help="list revoked tokens too")] = False,
) -> None:
    """Tokens with their role, creation, last use and creator; never the token or its hash."""
    from scheduler.tokens import list_tokens

    with _admin_session() as session:
        records = list_tokens(session, include_revoked=all_)
    typer.echo(f"{'id':>4}  {'name':<24} {'role':<9} {'created':<16} {'last used':<16} created by")
    for record in records:
        revoked = f"  (revoked {_minute(record.revoked_at)})" if record.revoked_at else ""
        typer.echo(
            f"{record.id:>4}  {record.name[:24]:<24} {record.role:<9} "
            f"{_minute(record.created_at):<16} {_minute(record.last_used_at):<16} "
            f"{record.created_by or '-'}{revoked}"
        )


@token_app.command("revoke")
def revoke(
    name_or_id: Annotated[str, typer.Argument(help="the token's id, or its name if unique")],
) -> None:
    """Revoke a token: servers refuse it within TENSLORA_TOKEN_CACHE_SECONDS (30 s by default)."""
    from scheduler.tokens import resolve_token, revoke_token

    with _admin_session() as session:
        record = revoke_token(session, resolve_token(session, name_or_id))
    typer.echo(f"revoked {record.role} token {record.name!r} (id {record.id})")


@contextmanager
def _admin_session() -> Iterator[Session]:
    """A session on TENSLORA_DATABASE_URL (schema upgraded); a domain error exits with code 2."""
    from scheduler.db import Database
    from scheduler.errors import SchedulerError
    from scheduler.migrate import upgrade
    from scheduler.settings import Settings

    settings = Settings()
    upgrade(settings.database_url)
    database = Database(settings.database_url, artifacts=settings.artifacts_dir)
    try:
        with database.session() as session:
            yield session
    except SchedulerError as exc:
        typer.echo(f"error: {exc.detail}", err=True)
        raise typer.Exit(2) from None
    finally:
        database.dispose()


def _minute(moment: datetime | None) -> str:
    return moment.strftime("%Y-%m-%d %H:%M") if moment else "never"


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
