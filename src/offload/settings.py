"""The one configuration object of offload.

Settings are read once, by whoever starts a process (the CLI, a factory, a test), and passed
down. Nothing else in offload reads the environment. Every field can be set through an
``OFFLOAD_<FIELD>`` environment variable or a ``.env`` file; with nothing set, offload runs on
embedded defaults (in-process broker, embedded SurrealDB results, SQLite) under ``./.offload``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from offload.errors import ConfigurationError

BROKER_SCHEMES = frozenset(
    {"memory", "redis", "rediss", "amqp", "amqps", "pyamqp", "sqs", "filesystem", "sentinel"}
)
RESULT_SCHEMES = frozenset(
    {
        "surrealdb+mem",
        "surrealdb+memory",
        "surrealdb+surrealkv",
        "surrealdb+file",
        "surrealdb+ws",
        "surrealdb+wss",
        "surrealdb",
        "redis",
        "rediss",
        "rpc",
        "cache+memory",
        "disabled",
    }
)
DATABASE_SCHEMES = frozenset({"sqlite+aiosqlite", "postgresql+asyncpg"})
QUEUES = ("high_priority", "default", "low_priority")


def url_scheme(url: str) -> str:
    """The scheme of ``url`` in lower case (``db+postgresql`` style prefixes included)."""
    return urlsplit(url).scheme.lower() if "://" in url else ""


def _check_scheme(field: str, url: str, allowed: frozenset[str], example: str) -> str:
    scheme = url_scheme(url)
    if scheme.startswith("db+") and "db+" in "".join(allowed):
        return url
    if scheme not in allowed:
        raise ValueError(
            f"unknown URL scheme {scheme or '(none)'!r} in {_redact(url)!r}; "
            f"use one of: {', '.join(sorted(allowed))} (for example {example})"
        )
    return url


def redact_url(url: str) -> str:
    """``url`` with any password replaced, for messages and logs."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


_redact = redact_url


def is_embedded_result_url(url: str) -> bool:
    from offload.backends.config import is_embedded_url  # the backend's own rule

    return url_scheme(url).startswith("surrealdb") and is_embedded_url(url)


class Settings(BaseSettings):
    """Everything offload can be told. Field docs are the user documentation."""

    model_config = SettingsConfigDict(
        env_prefix="OFFLOAD_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        validate_default=True,
    )

    # --- where things live -------------------------------------------------------------
    data_dir: Path = Field(Path(".offload"), description="Directory of the embedded stores.")
    broker_url: str | None = Field(
        None, description="Celery broker URL; default memory:// (in-process, dev only)."
    )
    result_backend: str | None = Field(
        None,
        description="Celery result backend URL; default surrealdb+surrealkv://<data_dir>/results.",
    )
    database_url: str | None = Field(
        None, description="SQLAlchemy async URL; default sqlite+aiosqlite:///<data_dir>/offload.db."
    )

    # --- SurrealDB (the keys users of surrealdb-celery-backend already have) -------------
    surrealdb_url: str = Field(
        "ws://localhost:8000/rpc",
        description="SurrealDB server used when Celery's result_backend is plain `surrealdb`.",
    )
    surrealdb_namespace: str = Field("celery", description="SurrealDB namespace of results.")
    surrealdb_database: str = Field("results", description="SurrealDB database of results.")
    surrealdb_username: str | None = Field(None, description="SurrealDB user (servers only).")
    surrealdb_password: SecretStr | None = Field(
        None, description="SurrealDB password; root/root is refused off loopback."
    )

    # --- tasks -----------------------------------------------------------------------------
    task_packages: list[str] = Field(
        default_factory=lambda: ["offload.apps.codegraph", "offload.apps.credits"],
        description="Packages whose tasks.py modules the worker and beat import.",
    )
    task_modules: list[str] = Field(
        default_factory=list, description="Extra modules to import (not auto-discovered)."
    )
    task_time_limit: float = Field(3600.0, gt=0, description="Default hard time limit (s).")
    task_soft_time_limit: float = Field(3300.0, gt=0, description="Default soft time limit (s).")
    visibility_timeout_margin: float = Field(
        600.0, ge=0,
        description="Seconds added to the longest a worker may hold a task (its time limit "
        "plus a retry's delay) for Redis redelivery.",
    )
    result_expires: float = Field(86400.0, gt=0, description="Seconds results are kept.")
    beat_overrides: dict[str, float] = Field(
        default_factory=dict,
        description="Replace a periodic task's schedule by an interval in seconds (tests, demos).",
    )
    dedup_ttl: float = Field(3600.0, gt=0, description="Seconds a dedup claim lives at most.")
    progress_min_interval: float = Field(
        0.25, ge=0, description="Least seconds between two stored progress updates of a task."
    )
    metrics_port: int | None = Field(
        None, ge=0, le=65535,
        description="A worker serves Prometheus /metrics on this port (host: api_host).",
    )

    # --- timeouts --------------------------------------------------------------------------
    socket_timeout: float = Field(30.0, gt=0, description="Redis socket timeout (s).")
    socket_connect_timeout: float = Field(10.0, gt=0, description="Redis connect timeout (s).")

    # --- worker ----------------------------------------------------------------------------
    worker_pool: Literal["prefork", "threads", "solo"] | None = Field(
        None, description="Worker pool; default threads with embedded stores, else prefork."
    )
    worker_concurrency: int | None = Field(
        None, gt=0, description="Worker processes/threads; default Celery's (CPU count)."
    )
    worker_queues: list[str] = Field(
        default_factory=lambda: list(QUEUES),
        description="Queues a worker consumes, e.g. OFFLOAD_WORKER_QUEUES='[\"high_priority\"]'.",
    )

    # --- HTTP API --------------------------------------------------------------------------
    api_host: str = Field("127.0.0.1", description="Address the HTTP API binds.")
    api_port: int = Field(8000, ge=0, le=65535, description="Port of the HTTP API.")
    api_keys: dict[str, str] = Field(
        default_factory=dict,
        description='API key -> tenant id, e.g. OFFLOAD_API_KEYS=\'{"k3y": "acme"}\'.',
    )
    dev_api_key: SecretStr = Field(
        SecretStr("dev-key"), description="Key for the demo tenant in `offload dev` only."
    )

    # --- logging ---------------------------------------------------------------------------
    log_level: str = Field("INFO", description="DEBUG, INFO, WARNING or ERROR.")
    log_format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="auto: readable on a terminal or with the in-process broker, else JSON.",
    )

    # --- codegraph -------------------------------------------------------------------------
    codegraph_roots: list[Path] = Field(
        default_factory=lambda: [Path.cwd()],
        description="Directories a repository to ingest must lie under.",
    )
    codegraph_max_file_bytes: int = Field(
        2_000_000, gt=0, description="Larger source files are skipped (and counted)."
    )
    codegraph_batch_rows: int = Field(
        5000, gt=0, description="Rows per COPY / executemany batch when storing a graph."
    )
    codegraph_parse_workers: int | None = Field(
        None, gt=0, description="Parse processes; default: the CPUs this process may use."
    )
    codegraph_max_files: int = Field(
        250_000, gt=0, description="Most source files one repository may have."
    )
    codegraph_pool_min_bytes: int = Field(
        1_000_000, ge=0, description="Parse in a process pool from this much source on."
    )

    # --- credits ---------------------------------------------------------------------------
    credits_allowance_standard: int = Field(100, ge=0)
    credits_allowance_premium: int = Field(500, ge=0)
    credits_allowance_free: int = Field(0, ge=0)
    credits_pending_max_age: float = Field(86400.0, gt=0, description="Seconds (default 24 h).")
    credits_hold_ttl: float = Field(3600.0, gt=0, description="Seconds a hold lives.")
    credits_batch_size: int = Field(500, gt=0)
    analytics_sink: Literal["none", "http", "table"] = "none"
    analytics_url: str | None = None
    analytics_table: str = "credit_usage"
    analytics_api_key: SecretStr | None = None

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        return _check_scheme("broker_url", value, BROKER_SCHEMES, "redis://127.0.0.1:6379/0")

    @field_validator("result_backend")
    @classmethod
    def _result_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme = url_scheme(value)
        if scheme.startswith("db+"):
            return value
        if scheme.startswith("surrealdb"):
            # the backend's own parser: the same checks (and messages) as when it starts
            from offload.backends.config import SurrealConfig

            SurrealConfig.parse(value)
        return _check_scheme(
            "result_backend", value, RESULT_SCHEMES, "surrealdb+ws://127.0.0.1:8000/rpc"
        )

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if url_scheme(value) in {"postgresql", "postgres"}:
            return "postgresql+asyncpg://" + value.split("://", 1)[1]
        return _check_scheme(
            "database_url",
            value,
            DATABASE_SCHEMES,
            "postgresql+asyncpg://user@127.0.0.1:5432/offload",
        )

    @field_validator("worker_queues")
    @classmethod
    def _known_queues(cls, value: list[str]) -> list[str]:
        unknown = [q for q in value if q not in QUEUES]
        if unknown or not value:
            raise ValueError(f"unknown queue(s) {unknown}; choose from {', '.join(QUEUES)}")
        return value

    @model_validator(mode="after")
    def _soft_below_hard(self) -> Settings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError(
                "task_soft_time_limit must be below task_time_limit so the task can clean up"
            )
        if self.analytics_sink == "http" and not self.analytics_url:
            raise ValueError("analytics_sink=http needs OFFLOAD_ANALYTICS_URL")
        return self

    # --- resolved values -------------------------------------------------------------------
    @property
    def broker(self) -> str:
        return self.broker_url or "memory://localhost/"

    @property
    def results(self) -> str:
        return self.result_backend or f"surrealdb+surrealkv://{self.data_dir.resolve()}/results"

    @property
    def database(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir.resolve()}/offload.db"

    @property
    def results_embedded(self) -> bool:
        return is_embedded_result_url(self.results)

    @property
    def broker_in_process(self) -> bool:
        return url_scheme(self.broker) == "memory"

    @property
    def pool(self) -> str:
        """The worker pool: prefork cannot share embedded stores or an in-process broker."""
        if self.worker_pool:
            return self.worker_pool
        return "threads" if self.results_embedded or self.broker_in_process else "prefork"

    def redacted(self) -> dict[str, Any]:
        """The settings as a dict safe to print: URLs without passwords, secrets hidden."""
        data = self.model_dump()
        for key in ("broker_url", "result_backend", "database_url", "surrealdb_url"):
            if data.get(key):
                data[key] = _redact(data[key])
        data["api_keys"] = sorted(set(self.api_keys.values()))  # the tenants, never the keys
        return data


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings` from the environment plus ``overrides``.

    Raises :class:`ConfigurationError` with one readable line per bad setting, naming the
    environment variable to change, instead of pydantic's raw report.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigurationError(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    lines = ["invalid offload settings:"]
    for error in exc.errors():
        field = ".".join(str(part) for part in error["loc"]) or "settings"
        env = f"OFFLOAD_{field.upper()}" if error["loc"] else "settings"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"  {field} ({env}): {message}")
    return "\n".join(lines)
