"""`tenslora serve`: the scheduler API under uvicorn (upgrades the schema at start)."""

from __future__ import annotations

from typing import Annotated

import typer


def serve(
    host: Annotated[str, typer.Option(help="interface to bind")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    access_log: Annotated[
        bool, typer.Option("--access-log/--no-access-log", help="log every request")
    ] = True,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Run the API (database from TENSLORA_DATABASE_URL; schema upgraded at start)."""
    import uvicorn

    # Named, not imported: the CLI reaches the scheduler through its port and never imports
    # ``api``; serving it is uvicorn's work (as ``uvicorn api.app:create_app --factory``).
    # proxy_headers off: uvicorn's default believes X-Forwarded-For from loopback, which would
    # let any local client pick the address the login throttle counts. The app trusts proxies
    # only as TENSLORA_TRUSTED_PROXIES says.
    uvicorn.run("api.app:create_app", factory=True, host=host, port=port,
                access_log=access_log, log_level=log_level, proxy_headers=False)
