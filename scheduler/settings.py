"""Service settings, read once from ``TENSLORA_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from scheduler.limits import NAME_LENGTH, Limits


def default_database_url() -> str:
    """An SQLite file under the user's data directory (created on first use)."""
    from platformdirs import user_data_dir

    folder = Path(user_data_dir("tenslora", appauthor=False))
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'scheduler.db'}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="TENSLORA_", extra="ignore")

    database_url: str = Field(
        default_factory=default_database_url,
        description="SQLAlchemy URL: sqlite:///path.db or postgresql+psycopg://user@host/db",
    )
    lease_seconds: float = Field(60.0, gt=0, description="how long a claim lives without heartbeat")
    max_attempts: int = Field(3, ge=1, description="runs of a job before expiry fails it")
    reap_interval_seconds: float = Field(
        5.0, gt=0, description="period of the background task that requeues expired leases"
    )
    max_sweep_jobs: int = Field(10_000, ge=1, description="largest sweep accepted")
    worker_seen_seconds: float = Field(
        300.0, gt=0, description="GET /workers lists workers seen within this window"
    )
    max_adapter_mb: float = Field(
        64.0,
        gt=0,
        description="largest trained adapter a worker may upload (zip, and its unpacked files); "
        "a larger one gets 413 and the job's result is still stored",
    )
    max_adapter_members: int = Field(
        64, ge=2,
        description="most files in an uploaded adapter zip (422 above it), checked before its "
        "directory is read",
    )
    artifacts_dir: Path | None = Field(
        None,
        description="folder of the trained adapters' zips (the database names each file); "
        "default: <database file>.artifacts beside an SQLite file, else the user's data folder. "
        "Several servers on one Postgres need one shared folder",
    )
    sqlite_busy_timeout_ms: int = Field(30_000, ge=0)
    dashboard_public: bool = Field(
        False, description="anyone may read the dashboard pages without signing in"
    )
    token_cache_seconds: float = Field(
        30.0,
        ge=0,
        description="how long a verified token is trusted without a lookup: a token revoked on "
        "another server (or with `tenslora token revoke`) still works here for up to this long",
    )
    max_body_mb: float = Field(
        16.0, gt=0,
        description="largest request body of any route but the adapter upload: a sweep's "
        "(413 above it); the smaller limits below are capped by it",
    )
    max_report_kib: int = Field(
        4096, ge=1,
        description="largest body of a worker's metrics, complete and fail calls (413 above it)",
    )
    max_small_body_kib: int = Field(
        64, ge=1,
        description="largest body of every other call that takes one: claims, heartbeats, "
        "release, tokens, the dashboard's sign-in form (413 above it)",
    )
    max_json_depth: int = Field(
        32, ge=4, le=256, description="deepest nesting of a JSON body (422 below it)"
    )
    max_json_values: int = Field(
        100_000, ge=1000,
        description="most values (strings, numbers, arrays, objects) one JSON body may hold, "
        "counted before it is parsed (413 above it): parsing holds the server's event loop "
        "about a microsecond per value",
    )
    # Names are stored in 200-character columns: the limits may be lowered, not raised.
    max_name_length: int = Field(
        NAME_LENGTH, ge=1, le=NAME_LENGTH,
        description="longest sweep name, tag, token name or worker id (422 above it)",
    )
    max_metric_name_length: int = Field(
        NAME_LENGTH, ge=1, le=NAME_LENGTH,
        description="longest metric name or result entry name (422 above it)",
    )
    max_result_entries: int = Field(
        1000, ge=1, description="most entries in one job's result (422 above it)"
    )
    max_error_kib: int = Field(
        64, ge=1, description="longest error text of a failed job; longer ones are truncated"
    )

    @property
    def limits(self) -> Limits:
        return Limits(
            name_length=self.max_name_length,
            metric_name_length=self.max_metric_name_length,
            result_entries=self.max_result_entries,
            error_bytes=self.max_error_kib * 1024,
        )
    cookie_secure: bool = Field(
        False, description="mark the dashboard's cookie Secure even when the request is plain "
        "HTTP (set it behind a TLS-terminating proxy)"
    )
    session_hours: float = Field(12.0, gt=0, description="lifetime of a dashboard sign-in")
    login_failures_per_minute: int = Field(
        5, ge=1, description="failed dashboard sign-ins per client address before 429"
    )
    trusted_proxies: str = Field(
        "", description="comma-separated addresses or networks (127.0.0.1, 10.0.0.0/8) of "
        "reverse proxies whose X-Forwarded-For / X-Forwarded-Proto name the client; empty "
        "(the default): the client is the TCP peer and those headers are ignored"
    )
