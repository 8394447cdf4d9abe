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
        16.0, gt=0, description="largest request body accepted (413 above it)"
    )
    max_json_depth: int = Field(
        32, ge=4, le=256, description="deepest nesting of a JSON body (422 below it)"
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
