"""What Loist's monitoring looks at, as data: dashboard panels, alerts and SLOs, written once.

Why one module: the Cloud Monitoring dashboard, alert policies and SLOs (``monitoring.py``) and the
local Grafana dashboard and Prometheus alert rules (``dashboards.py``, generated into
``deploy/observability/``) are all built from these definitions, so a metric name is typed once,
here. A test scrapes a real ``loist serve`` and checks every ``loist_`` name used here (through
what the Pulumi program declares) is one the app emits. Dependency-free, like ``envspec``.

Two kinds of signal:

- **App metrics** (the app's Prometheus families on ``METRICS_PORT``), written in PromQL. On Google
  Cloud the Managed Service for Prometheus sidecar ships them to Cloud Monitoring, where PromQL
  reads them under their own names and the rest of the API (SLO filters) as
  ``prometheus.googleapis.com/<name>/<kind>`` (:func:`gmp_metric_type`). ``{@}`` / ``{@,`` in an
  expression stands for the scope matcher (:func:`promql`): the Cloud Run service on Google Cloud
  (``namespace``, which the sidecar sets to the service name), the scrape job locally.
- **Platform metrics** (Cloud Run, Cloud SQL, uptime checks, a log-based metric): Cloud Monitoring
  filters, only on Google Cloud.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

#: Cloud Monitoring's domain for metrics written through Managed Service for Prometheus.
GMP_DOMAIN = "prometheus.googleapis.com"

#: The job name of the local Prometheus scrape (deploy/observability/prometheus.yml).
LOCAL_JOB = "loist"

#: Routes a person waits on (player page, oEmbed, artwork, health): the latency SLO and the p95
#: alert cover these. Not ``/mcp`` (a tool call may download a whole file) nor the audio stream
#: (a response lasts as long as the listener). A regular expression over the ``route`` label
#: (the route template), valid both in PromQL and in Cloud Monitoring's ``monitoring.regex``.
INTERACTIVE_ROUTES = "/embed/.+|/oembed|/.well-known/oembed.json|/audio/.+/thumbnail|/health/.+"

#: Status codes that count as server errors (``status`` label).
SERVER_ERROR = "5.."

#: The PromQL window every rate is taken over.
WINDOW = "5m"


def gmp_metric_type(name: str, kind: str) -> str:
    """``loist_http_requests_total`` + ``counter`` -> ``prometheus.googleapis.com/loist_http_requests_total/counter``.

    Managed Service for Prometheus keeps the Prometheus name whole (``_total``, ``_seconds`` and
    all) and appends the kind: ``counter``, ``gauge``, ``histogram`` (``summary`` and
    ``unknown`` have their own forms, which Loist does not emit)."""
    if kind not in ("counter", "gauge", "histogram"):
        raise ValueError(f"unsupported Prometheus kind {kind!r}")
    return f"{GMP_DOMAIN}/{name}/{kind}"


def cloud_scope(service_name: str) -> str:
    """The PromQL matcher for one Cloud Run service's series in Cloud Monitoring."""
    return f'namespace="{service_name}"'


LOCAL_SCOPE = f'job="{LOCAL_JOB}"'


def promql(expr: str, scope: str) -> str:
    """Fill the scope matcher into an expression written with ``{@}`` / ``{@,``."""
    return expr.replace("{@}", "{" + scope + "}").replace("{@,", "{" + scope + ",")


def _p(quantile: float, family: str, by: str = "", where: str = "") -> str:
    """``histogram_quantile`` over a histogram family, optionally per label and filtered."""
    labels = ", ".join(["le", *([by] if by else [])])
    selector = "{@" + (f", {where}" if where else "") + "}"
    return f"histogram_quantile({quantile}, sum by ({labels}) (rate({family}_bucket{selector}[{WINDOW}])))"


def _ratio(family: str, bad: str) -> str:
    """Share of a counter's increase whose labels match ``bad``."""
    return f"sum(rate({family}{{@, {bad}}}[{WINDOW}])) / sum(rate({family}{{@}}[{WINDOW}]))"


# --- expressions shared by panels and alerts --------------------------------------------------

HTTP_5XX_RATIO = _ratio("loist_http_requests_total", f'status=~"{SERVER_ERROR}"')
HTTP_P95 = _p(0.95, "loist_http_request_duration_seconds", where=f'route=~"{INTERACTIVE_ROUTES}"')
HTTP_P50 = _p(0.5, "loist_http_request_duration_seconds", where=f'route=~"{INTERACTIVE_ROUTES}"')
INGEST_FAILURE_RATIO = _ratio("loist_ingest_total", 'outcome!="ok"')
SEARCH_P95 = _p(0.95, "loist_search_duration_seconds", by="engine")


@dataclass(frozen=True)
class Query:
    """One PromQL series set of a panel; ``legend`` is a Grafana legend template."""

    expr: str
    legend: str = ""


@dataclass(frozen=True)
class CloudSeries:
    """A Cloud Monitoring time series filter with its aggregation (platform metrics).

    ``where`` may use ``{service}`` (Cloud Run service name), ``{database_id}``
    (``project:instance``) and ``{log_metric}`` (the error-log metric's name)."""

    metric_type: str
    resource_type: str
    where: str
    aligner: str
    reducer: str = "REDUCE_SUM"
    group_by: tuple[str, ...] = ()
    period_s: int = 60

    def filter(self, **names: str) -> str:
        metric_type = self.metric_type.format(**names)
        parts = [f'metric.type="{metric_type}"', f'resource.type="{self.resource_type}"']
        if self.where:
            parts.append(self.where.format(**names))
        return " AND ".join(parts)


@dataclass(frozen=True)
class Panel:
    """A dashboard chart: app panels (``queries``) appear in Grafana and Cloud Monitoring,
    platform panels (``cloud``) in Cloud Monitoring only."""

    title: str
    unit: str  # Grafana unit id: reqps, s, percentunit, short, Bps, ops
    queries: tuple[Query, ...] = ()
    cloud: tuple[CloudSeries, ...] = ()

    @property
    def local(self) -> bool:
        return bool(self.queries)


# --- platform series ----------------------------------------------------------------------------

RUN_SERVICE = 'resource.label.service_name="{service}"'
INSTANCES = CloudSeries("run.googleapis.com/container/instance_count", "cloud_run_revision", RUN_SERVICE, "ALIGN_MAX")
RUN_REQUESTS = CloudSeries(
    "run.googleapis.com/request_count", "cloud_run_revision", RUN_SERVICE, "ALIGN_RATE",
    group_by=("metric.label.response_code_class",),
)
RUN_LATENCY_P95 = CloudSeries(
    "run.googleapis.com/request_latencies", "cloud_run_revision", RUN_SERVICE, "ALIGN_DELTA",
    reducer="REDUCE_PERCENTILE_95",
)
SQL_INSTANCE = 'resource.label.database_id="{database_id}"'
SQL_CPU = CloudSeries("cloudsql.googleapis.com/database/cpu/utilization", "cloudsql_database", SQL_INSTANCE, "ALIGN_MEAN", reducer="REDUCE_MAX")
SQL_DISK = CloudSeries("cloudsql.googleapis.com/database/disk/utilization", "cloudsql_database", SQL_INSTANCE, "ALIGN_MEAN", reducer="REDUCE_MAX")
SQL_CONNECTIONS = CloudSeries(
    "cloudsql.googleapis.com/database/postgresql/num_backends", "cloudsql_database", SQL_INSTANCE, "ALIGN_MEAN",
)
ERROR_LOGS = CloudSeries(
    "logging.googleapis.com/user/{log_metric}", "cloud_run_revision", RUN_SERVICE, "ALIGN_SUM", period_s=300,
)
UPTIME = CloudSeries(
    "monitoring.googleapis.com/uptime_check/check_passed", "uptime_url", 'metric.label.check_id="{check_id}"',
    "ALIGN_NEXT_OLDER", reducer="REDUCE_COUNT_FALSE", group_by=("resource.label.host",),
)


def error_log_filter(service_name: str) -> str:
    """Log entries the error-log metric counts: the service's own ERROR and worse."""
    return (
        f'resource.type="cloud_run_revision" AND resource.labels.service_name="{service_name}" '
        "AND severity>=ERROR"
    )


PANELS: tuple[Panel, ...] = (
    Panel("Requests per second by route", "reqps", (
        Query(f"sum by (route) (rate(loist_http_requests_total{{@}}[{WINDOW}]))", "{{route}}"),
    )),
    Panel("Server errors (share of requests answered 5xx)", "percentunit", (Query(HTTP_5XX_RATIO, "5xx"),)),
    Panel("Latency of interactive routes", "s", (Query(HTTP_P50, "p50"), Query(HTTP_P95, "p95"))),
    Panel("MCP tool calls by tool and outcome", "ops", (
        Query(f"sum by (tool, outcome) (rate(loist_mcp_tool_calls_total{{@}}[{WINDOW}]))", "{{tool}} {{outcome}}"),
    )),
    Panel("MCP tool latency p95 by tool", "s", (
        Query(_p(0.95, "loist_mcp_tool_duration_seconds", by="tool"), "{{tool}}"),
    )),
    Panel("Ingests by source and outcome", "ops", (
        Query(f"sum by (source, outcome) (rate(loist_ingest_total{{@}}[{WINDOW}]))", "{{source}} {{outcome}}"),
    )),
    Panel("Ingest failure share", "percentunit", (Query(INGEST_FAILURE_RATIO, "failed"),)),
    Panel("Ingest stage p95", "s", (Query(_p(0.95, "loist_ingest_duration_seconds", by="stage"), "{{stage}}"),)),
    Panel("Ingested bytes per second", "Bps", (
        Query(f"sum(rate(loist_ingest_bytes_total{{@}}[{WINDOW}]))", "bytes"),
    )),
    Panel("Search latency p95 by engine", "s", (Query(SEARCH_P95, "{{engine}}"),)),
    Panel("Storage operations by backend, operation and outcome", "ops", (
        Query(
            f"sum by (backend, op, outcome) (rate(loist_storage_operations_total{{@}}[{WINDOW}]))",
            "{{backend}} {{op}} {{outcome}}",
        ),
    )),
    Panel("Database pool connections", "short", (
        Query("sum by (state) (loist_db_pool_connections{@})", "{{state}}"),
        Query("sum(loist_db_pool_size{@})", "pool size"),
    )),
    Panel("Versions serving", "short", (Query("count by (version) (loist_build_info{@})", "{{version}}"),)),
    Panel("Cloud Run instances", "short", cloud=(INSTANCES,)),
    Panel("Cloud Run requests by response class", "reqps", cloud=(RUN_REQUESTS,)),
    Panel("Cloud Run request latency p95 (all routes)", "ms", cloud=(RUN_LATENCY_P95,)),
    Panel("Cloud SQL CPU utilization", "percentunit", cloud=(SQL_CPU,)),
    Panel("Cloud SQL disk utilization", "percentunit", cloud=(SQL_DISK,)),
    Panel("Cloud SQL connections", "short", cloud=(SQL_CONNECTIONS,)),
    Panel("Error log entries (per 5 minutes)", "short", cloud=(ERROR_LOGS,)),
)


# --- alerts -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Objectives:
    """The numbers alerts and SLOs hold one environment to (defaults per environment, the SLO
    targets overridable from the stack config: ``loist:sloAvailability``, ``loist:sloLatencyMs``)."""

    availability: float  # SLO: share of requests not answered 5xx, over 28 days
    latency_ms: int  # SLO and p95 alert: interactive routes answer within this
    latency_goal: float = 0.95  # SLO: share of interactive requests within latency_ms
    error_ratio: float = 0.05  # alert: 5xx share over 10 minutes
    ingest_failure_ratio: float = 0.25  # alert: failed ingests over 15 minutes
    search_p95_ms: int = 500  # alert: search p95 over 10 minutes
    sql_cpu: float = 0.8
    sql_disk: float = 0.85
    near_max: float = 0.8  # connections and instances: alert at this share of the maximum
    error_logs_per_5m: int = 20
    uptime_period_s: int = 300

    @property
    def latency_s(self) -> float:
        return self.latency_ms / 1000


OBJECTIVES: dict[str, Objectives] = {
    "staging": Objectives(availability=0.99, latency_ms=800, error_logs_per_5m=50, uptime_period_s=300),
    "production": Objectives(availability=0.995, latency_ms=500, uptime_period_s=60),
}


def objectives_for(environment: str, availability: float | None = None, latency_ms: int | None = None) -> Objectives:
    """The environment's objectives, with the stack config's SLO targets where set."""
    base = OBJECTIVES[environment]
    return replace(
        base,
        availability=base.availability if availability is None else availability,
        latency_ms=base.latency_ms if latency_ms is None else latency_ms,
    )


@dataclass(frozen=True)
class Alert:
    """One alert policy. ``key`` names its runbook section in docs/operations.md
    (``#alert-<key>``). Exactly one of ``promql`` (app metrics, the expression including its
    comparison, with ``$name`` thresholds filled from :class:`Objectives`), ``series`` (a platform
    threshold) or ``slo`` (burn rate of that SLO key) is set."""

    key: str
    title: str
    summary: str
    severity: str  # CRITICAL, ERROR, WARNING
    duration_s: int = 600
    promql: str = ""
    series: CloudSeries | None = None
    threshold: str = ""  # with ``series``: which value of monitoring.threshold_values()
    slo: str = ""

    @property
    def anchor(self) -> str:
        return f"alert-{self.key}"


ALERTS: tuple[Alert, ...] = (
    Alert("uptime", "Uptime check failing", "A health check from Google's uptime checkers fails "
          "from more than one region.", "CRITICAL", duration_s=120, series=UPTIME,
          threshold="uptime_regions"),
    Alert("server-errors", "5xx share above threshold", "More than the allowed share of requests "
          "was answered with a server error.", "ERROR", promql=f"({HTTP_5XX_RATIO}) > $error_ratio"),
    Alert("latency", "Interactive latency p95 above threshold", "Player pages, oEmbed, artwork or "
          "health answer slower than the latency objective.", "WARNING", promql=f"({HTTP_P95}) > $latency_s"),
    Alert("ingest-failures", "Ingest failure share above threshold", "Too many ingests fail "
          "(fetch, format, storage or database).", "WARNING", duration_s=900,
          promql=f"({INGEST_FAILURE_RATIO}) > $ingest_failure_ratio"),
    Alert("search-latency", "Search p95 above threshold", "Searches take longer than they should.",
          "WARNING", promql=f"max({SEARCH_P95}) > $search_p95_s"),
    Alert("sql-cpu", "Cloud SQL CPU high", "The database instance's CPU is nearly saturated.",
          "WARNING", series=SQL_CPU, threshold="sql_cpu"),
    Alert("sql-disk", "Cloud SQL disk nearly full", "The database disk is close to full "
          "(automatic growth may be failing or at its limit).", "ERROR", duration_s=300, series=SQL_DISK,
          threshold="sql_disk"),
    Alert("sql-connections", "Cloud SQL connections near max_connections", "Open connections approach "
          "the instance's max_connections; new ones will be refused.", "ERROR", duration_s=300,
          series=SQL_CONNECTIONS, threshold="sql_connections"),
    Alert("instances", "Cloud Run instances near the maximum", "The service runs close to its "
          "maximum instance count; more load will queue or be refused.", "WARNING", duration_s=300,
          series=INSTANCES, threshold="instances"),
    Alert("error-logs", "Error log spike", "The service writes many ERROR log lines.", "WARNING",
          duration_s=0, series=ERROR_LOGS, threshold="error_logs"),
    Alert("availability-burn", "Availability SLO error budget burning", "Server errors use up the "
          "availability error budget faster than it lasts.", "CRITICAL", slo="availability"),
    Alert("latency-burn", "Latency SLO error budget burning", "Slow interactive responses use up the latency "
          "error budget faster than it lasts.", "ERROR", slo="latency"),
)


@dataclass(frozen=True)
class BurnRate:
    """Multi-window burn-rate alerting (Google SRE workbook): page when the budget burns 14.4x
    too fast over an hour (2 % of a 30-day budget gone), warn at 6x over six hours."""

    lookback_s: int
    threshold: float


BURN_RATES: tuple[BurnRate, ...] = (BurnRate(3600, 14.4), BurnRate(21600, 6.0))

#: SLO rolling window in days.
SLO_WINDOW_DAYS = 28


@dataclass(frozen=True)
class SloSpec:
    key: str
    title: str
    #: availability: Cloud Run's own request count (it sees requests the app never answered:
    #: crashed or missing instances, time-outs); latency: the app's histogram (only it knows the
    #: route, so only it can leave out the MCP and stream routes).
    total: str = ""
    bad: str = ""
    distribution: str = ""


def slo_specs(service_name: str) -> tuple[SloSpec, ...]:
    run = (
        f'metric.type="run.googleapis.com/request_count" resource.type="cloud_run_revision" '
        f'resource.label.service_name="{service_name}"'
    )
    histogram = gmp_metric_type("loist_http_request_duration_seconds", "histogram")
    return (
        SloSpec("availability", "Requests answered without a server error", total=run,
                bad=f'{run} metric.label.response_code_class="5xx"'),
        SloSpec("latency", "Interactive requests answered within the latency objective",
                distribution=(
                    f'metric.type="{histogram}" resource.type="prometheus_target" '
                    f'resource.label.namespace="{service_name}" '
                    f'metric.label.route=monitoring.regex.full_match("{INTERACTIVE_ROUTES}")'
                )),
    )
