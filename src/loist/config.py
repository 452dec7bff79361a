"""Settings: one object, built from the environment and an optional ``.env`` file.

Nothing reads ``os.environ`` anywhere else. Every entry point builds a :class:`Settings` (usually
through :func:`load_settings`) and hands it down. The names are the ones operators of "Music
Library MCP" already use; ``docs/configuration.md`` documents each one (a test keeps the two in
step).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict, SettingsError

from loist.errors import ConfigInvalid

Environment = Literal["local", "staging", "production"]

MIN_PRODUCTION_TOKEN_LENGTH = 32
# Bind addresses meaning "every interface": not a host name a client can use in a URL (compared
# against, never bound).
WILDCARD_HOSTS = ("0.0.0.0", "::", "")  # noqa: S104  # nosec B104


def default_data_dir() -> Path:
    """The per-user library folder when ``LOIST_DATA_DIR`` is unset: the platform's data folder
    (``$XDG_DATA_HOME/loist``, usually ``~/.local/share/loist``), so every command, the stdio server
    and the HTTP server use one library wherever they are started."""
    import platformdirs

    return platformdirs.user_data_path("loist", appauthor=False)


def _split_csv(value: Any) -> Any:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


class Settings(BaseSettings):
    """The effective configuration. Field names map 1:1 to upper-case environment variables."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    # --- profile -------------------------------------------------------------------------------
    environment: Environment = "local"
    data_dir: Path = Field(default_factory=lambda: default_data_dir(), validation_alias=AliasChoices("LOIST_DATA_DIR", "data_dir"))

    # --- catalog (database) ----------------------------------------------------------------------
    database_url: SecretStr | None = None
    db_host: str | None = None
    db_port: int = 5432
    db_name: str | None = None
    db_user: str | None = None
    db_password: SecretStr | None = None
    db_connection_name: str | None = None  # Cloud SQL "project:region:instance" -> /cloudsql/<name>
    db_pool_size: int = Field(default=5, ge=1, le=100)
    db_max_overflow: int | None = Field(default=None, ge=0, le=100)  # default: DB_POOL_SIZE (PostgreSQL)
    sqlite_write_timeout_s: float = Field(default=30, gt=0, le=3600)

    # --- storage ---------------------------------------------------------------------------------
    storage_backend: Literal["local", "gcs"] = "local"
    storage_path: Path | None = None  # default: <data_dir>/blobs
    gcs_bucket_name: str | None = None
    gcs_project_id: str | None = None
    signed_url_ttl_s: int = Field(default=900, ge=60, le=7 * 24 * 3600)
    storage_threads: int = Field(default=16, ge=1, le=256)  # the bounded pool blocking storage work runs in
    storage_min_free_mb: float = Field(default=256, ge=0)  # local backend: less free space is "not ready"
    gcs_timeout_s: float = Field(default=5, gt=0, le=300)  # each HTTP request: connect, each wait for bytes
    gcs_read_deadline_s: float = Field(default=5, ge=0, le=600)  # retrying a stat or ranged read
    gcs_retry_deadline_s: float = Field(default=15, ge=0, le=600)  # retrying an upload, delete, download
    gcs_breaker_failures: int = Field(default=3, ge=0, le=1000)  # 0: no circuit breaker
    gcs_breaker_cooldown_s: float = Field(default=30, gt=0, le=3600)

    # --- ingest ----------------------------------------------------------------------------------
    max_file_size_mb: float = Field(default=500, gt=0)
    download_timeout_s: float = Field(default=300, gt=0)
    download_temp_budget_mb: float | None = Field(default=None, gt=0)  # default: MAX_FILE_SIZE_MB
    allow_private_urls: bool = False
    ingest_concurrency: int = Field(default=0, ge=0, le=64)  # 0 = one worker per core

    # --- background jobs: waveforms, web renditions (loist.library.jobs) ---------------------------
    jobs_workers: int = Field(default=1, ge=0, le=16)  # inside `loist serve`; 0: run `loist worker` instead
    jobs_max_attempts: int = Field(default=5, ge=1, le=100)  # then the job is dead
    jobs_lease_s: float = Field(default=60, ge=1, le=3600)  # renewed while running; a dead worker's expires
    jobs_backoff_s: float = Field(default=30, ge=0, le=86400)  # first retry delay, doubled each attempt
    jobs_poll_s: float = Field(default=5, gt=0, le=3600)  # idle workers look for due jobs this often
    jobs_timeout_s: float = Field(default=900, gt=0, le=86400)  # one ffmpeg run

    # --- server ----------------------------------------------------------------------------------
    server_name: str = "Music Library MCP"
    server_transport: Literal["stdio", "http"] = "http"
    server_host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    auth_enabled: bool = False
    bearer_token: SecretStr | None = None
    embed_base_url: str | None = None  # default: http://<server_host>:<port>
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    allowed_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list)
    frame_ancestors: str = "*"
    docs_url: str | None = None  # the documentation the landing page (GET /) links to
    health_timeout_s: float = Field(default=2, gt=0, le=60)  # /health/ready answers within this
    web_workers: int = Field(default=1, ge=1, le=64)  # server processes sharing the port (loist.web.workers)

    # --- admission control (loist.web.admission) -------------------------------------------------
    max_concurrent_requests: int = Field(default=64, ge=0, le=100_000)  # per process; 0: no admission control
    max_concurrent_mcp: int = Field(default=8, ge=1, le=10_000)
    max_concurrent_streams: int = Field(default=32, ge=1, le=10_000)
    max_concurrent_ingests: int = Field(default=2, ge=1, le=1_000)
    admission_wait_ms: float = Field(default=100, ge=0, le=60_000)
    admission_retry_after_s: float = Field(default=1, gt=0, le=3600)

    # --- HTTP connections (loist.web.protocol) ---------------------------------------------------
    http_max_header_bytes: int = Field(default=64 * 1024, ge=1024, le=16 * 1024 * 1024)
    http_max_headers: int = Field(default=100, ge=8, le=10_000)
    http_header_timeout_s: float = Field(default=10, gt=0, le=3600)
    http_body_timeout_s: float = Field(default=30, gt=0, le=3600)
    http_keepalive_timeout_s: float = Field(default=5, gt=0, le=3600)

    # --- abuse limits (loist.web.ratelimit) ------------------------------------------------------
    rate_limits_enabled: bool = True
    rate_limit_auth_failures: str = "10/minute"  # failed bearer checks per client
    rate_limit_ingest: str = "30/minute"  # write tools (ingest, update, delete) per client
    rate_limit_mcp: str = "600/minute"  # MCP messages per client
    rate_limit_public: str = "3000/minute"  # every other request per client (pages, streams, health)
    ingest_max_downloads: int = Field(default=8, ge=1, le=1000)  # URL ingests running at once, per instance
    ingest_max_downloads_per_client: int = Field(default=2, ge=1, le=1000)  # ... per client, per instance
    trusted_proxy_count: int = Field(default=0, ge=0, le=10)  # proxies whose X-Forwarded-For entry is believed
    redis_url: SecretStr | None = None  # shared limits across instances; unset: each instance counts alone
    rate_limit_key_prefix: str = Field(default="loist", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")

    # --- logging ---------------------------------------------------------------------------------
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    log_format: Literal["text", "json"] = "text"
    access_log: bool = True  # one line per HTTP request (loist.access), with status and latency

    # --- telemetry (loist.telemetry, docs/observability.md) -------------------------------------
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)  # 0: no metrics listener
    prometheus_multiproc_dir: Path | None = None  # set by a parent that runs several web workers
    google_cloud_project: str | None = None  # trace ids in log lines; default: GCS_PROJECT_ID
    # Read here only to decide whether tracing is on; the OpenTelemetry SDK reads every OTEL_* itself.
    otel_traces_exporter: str | None = None  # otlp, gcp_trace, console or none
    otel_exporter_otlp_endpoint: str | None = None
    otel_exporter_otlp_traces_endpoint: str | None = None

    @field_validator("cors_origins", "allowed_hosts", mode="before")
    @classmethod
    def _csv(cls, value: Any) -> Any:
        return _split_csv(value)

    @field_validator("rate_limit_auth_failures", "rate_limit_ingest", "rate_limit_mcp", "rate_limit_public")
    @classmethod
    def _rate(cls, value: str, info: ValidationInfo) -> str:
        if info.field_name and value == cls.model_fields[info.field_name].default:
            return value  # a default, a rate (a test parses them): no need to import limits (~15 ms)
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a rate: write e.g. '10/minute' or '300 per hour'") from None
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.upper() if isinstance(value, str) else value

    @field_validator("embed_base_url", mode="after")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    # --- derived values --------------------------------------------------------------------------
    @property
    def public_base_url(self) -> str:
        """The base of every public URL (embed, oEmbed, stream). Never a hard-coded host."""
        if self.embed_base_url:
            return self.embed_base_url
        host = self.server_host
        if self.binds_all_interfaces:
            host = "localhost"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def binds_all_interfaces(self) -> bool:
        return self.server_host in WILDCARD_HOSTS

    @property
    def trace_project(self) -> str | None:
        """The Google Cloud project trace ids in log lines belong to."""
        return self.google_cloud_project or self.gcs_project_id

    @property
    def traces_exporter(self) -> str | None:
        """The span exporter ``OTEL_TRACES_EXPORTER`` names (an OTLP endpoint alone means ``otlp``),
        or None: tracing off."""
        chosen = (self.otel_traces_exporter or "").strip().lower()
        if not chosen and (self.otel_exporter_otlp_endpoint or self.otel_exporter_otlp_traces_endpoint):
            chosen = "otlp"
        return chosen if chosen and chosen != "none" else None

    @property
    def blob_dir(self) -> Path:
        return self.storage_path if self.storage_path is not None else self.data_dir / "blobs"

    @property
    def max_file_size_bytes(self) -> int:
        return int(self.max_file_size_mb * 1024 * 1024)

    @property
    def download_temp_budget_bytes(self) -> int:
        """Temporary space all concurrent URL downloads of this process may hold together."""
        budget_mb = self.download_temp_budget_mb if self.download_temp_budget_mb is not None else self.max_file_size_mb
        return int(budget_mb * 1024 * 1024)

    @property
    def effective_ingest_concurrency(self) -> int:
        import os

        return self.ingest_concurrency or max(1, os.cpu_count() or 1)

    def sqlalchemy_url(self) -> str:
        """The async SQLAlchemy URL, with drivers picked by the app (aiosqlite / asyncpg)."""
        if self.database_url is not None:
            return normalize_database_url(self.database_url.get_secret_value())
        if self.db_host or self.db_connection_name:
            user = quote(self.db_user or "postgres", safe="")
            password = self.db_password.get_secret_value() if self.db_password else ""
            auth = f"{user}:{quote(password, safe='')}@" if password else f"{user}@"
            name = quote(self.db_name or "loist", safe="")
            if self.db_connection_name:
                socket_dir = f"/cloudsql/{self.db_connection_name}"
                return f"postgresql+asyncpg://{auth}/{name}?host={quote(socket_dir, safe='/:')}"
            return f"postgresql+asyncpg://{auth}{self.db_host}:{self.db_port}/{name}"
        return f"sqlite+aiosqlite:///{(self.data_dir / 'loist.db').resolve()}"

    @property
    def database_dialect(self) -> Literal["sqlite", "postgresql"]:
        return "sqlite" if self.sqlalchemy_url().startswith("sqlite") else "postgresql"

    # --- validation ------------------------------------------------------------------------------
    def problems(self) -> list[str]:
        """Everything wrong with this configuration for its profile (empty when it is usable)."""
        found: list[str] = []
        token = self.bearer_token.get_secret_value() if self.bearer_token else ""
        if self.auth_enabled and not token:
            found.append("AUTH_ENABLED is true but BEARER_TOKEN is empty")
        if self.storage_backend == "gcs" and not self.gcs_bucket_name:
            found.append("STORAGE_BACKEND=gcs needs GCS_BUCKET_NAME")
        if self.download_temp_budget_mb is not None and self.download_temp_budget_mb < self.max_file_size_mb:
            found.append(
                f"DOWNLOAD_TEMP_BUDGET_MB ({self.download_temp_budget_mb:g}) is below MAX_FILE_SIZE_MB "
                f"({self.max_file_size_mb:g}): a file of the largest allowed size could never be downloaded"
            )
        try:
            url = self.sqlalchemy_url()
        except ValueError as exc:
            found.append(str(exc))
            url = ""
        if self.embed_base_url:
            parts = urlsplit(self.embed_base_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                found.append(f"EMBED_BASE_URL must be an absolute http(s) URL, got {self.embed_base_url!r}")
        if self.traces_exporter not in (None, "otlp", "gcp_trace", "console"):
            found.append(f"OTEL_TRACES_EXPORTER must be otlp, gcp_trace, console or none, got {self.otel_traces_exporter!r}")
        redis = self.redis_url.get_secret_value() if self.redis_url else ""
        if redis and urlsplit(redis).scheme not in ("redis", "rediss", "unix"):
            found.append("REDIS_URL must be a redis://, rediss:// or unix:// URL")
        if self.environment == "production":
            if not self.auth_enabled:
                found.append("production refuses AUTH_ENABLED=false: /mcp would be open to anyone")
            elif token and len(token) < MIN_PRODUCTION_TOKEN_LENGTH:
                found.append(f"production needs a BEARER_TOKEN of at least {MIN_PRODUCTION_TOKEN_LENGTH} characters")
            if self.allow_private_urls:
                found.append("production refuses ALLOW_PRIVATE_URLS=true (SSRF protection must stay on)")
            if not self.rate_limits_enabled:
                found.append("production refuses RATE_LIMITS_ENABLED=false (token guessing and floods must be limited)")
            if url.startswith("sqlite"):
                found.append("production refuses SQLite: set DATABASE_URL or DB_HOST/DB_CONNECTION_NAME to PostgreSQL")
            if self.storage_backend != "gcs":
                found.append("production refuses STORAGE_BACKEND=local: instances are ephemeral, use gcs")
            if not self.embed_base_url or not self.embed_base_url.startswith("https://"):
                found.append("production needs an https EMBED_BASE_URL (the public URL people share)")
        return found

    def check(self) -> Settings:
        """Raise :class:`ConfigInvalid` listing every problem; return self when usable."""
        found = self.problems()
        if found:
            raise ConfigInvalid("invalid configuration: " + "; ".join(found), details={"problems": found})
        return self

    def masked(self) -> dict[str, Any]:
        """The effective configuration as environment-variable names, secrets masked."""
        out: dict[str, Any] = {}
        for name, field in type(self).model_fields.items():
            value = getattr(self, name)
            alias = field.validation_alias
            env_name = alias.choices[0] if isinstance(alias, AliasChoices) else name.upper()
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else ""
            elif isinstance(value, Path):
                value = str(value)
            out[str(env_name)] = value
        out["(database)"] = mask_url(self.sqlalchemy_url())
        out["(public base url)"] = self.public_base_url
        return out


def normalize_database_url(url: str) -> str:
    """Accept the plain forms operators write and pick the async drivers the app uses."""
    url = url.strip()
    scheme, sep, rest = url.partition("://")
    if not sep:
        raise ValueError(f"DATABASE_URL is not a URL: {mask_url(url)!r}")
    base = scheme.split("+", 1)[0].lower()
    if base == "sqlite":
        return f"sqlite+aiosqlite://{rest}"
    if base in ("postgres", "postgresql"):
        return f"postgresql+asyncpg://{rest}"
    raise ValueError(f"DATABASE_URL scheme {scheme!r} is not supported (use sqlite:// or postgresql://)")


def mask_url(url: str) -> str:
    """Hide the password in a URL, for logs and ``loist config check``."""
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":********@", 1)
        return parts._replace(netloc=netloc).geturl()
    return url


def build_settings(**overrides: Any) -> Settings:
    """Build settings from the environment (and ``.env``) plus ``overrides``, without the profile rules.

    The one place a pydantic validation error becomes :class:`ConfigInvalid` (``CONFIG_INVALID``):
    ``loist config check`` uses it to report the profile's problems instead of stopping on them.
    """
    try:
        return Settings(**overrides)
    except (ValidationError, SettingsError) as exc:  # a value pydantic refuses: our error, its message
        raise ConfigInvalid(f"invalid configuration: {exc}") from None


def load_settings(**overrides: Any) -> Settings:
    """Build settings (:func:`build_settings`) and enforce the profile rules (:meth:`Settings.check`)."""
    return build_settings(**overrides).check()
