"""Process logging from ``LOG_LEVEL`` and ``LOG_FORMAT``: one place, called by every entry point.

``text`` is for people; ``json`` writes one JSON object per line with the ``severity`` field Cloud
Logging reads. Everything goes to stderr (stdout belongs to MCP over stdio and to ``--json``
output). A filter masks the configured secrets (bearer token, database password and URL password)
in every record, so a secret that reaches a log message by accident is never written.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from loist.config import Settings
from loist.telemetry.context import current as current_trace

MASK = "********"


TRACE_FIELD = "logging.googleapis.com/trace"
SPAN_FIELD = "logging.googleapis.com/spanId"
SAMPLED_FIELD = "logging.googleapis.com/trace_sampled"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: severity, message, logger, time, the traceback if any, the trace
    of the request it belongs to (Cloud Logging's fields, ``projects/PROJECT/traces/ID`` when the
    project is known) and an access line's ``httpRequest``."""

    def __init__(self, trace_project: str | None = None) -> None:
        super().__init__()
        self.trace_prefix = f"projects/{trace_project}/traces/" if trace_project else ""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": record.levelname,
            "message": record.getMessage(),
            "logger": record.name,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
        }
        trace = current_trace()
        if trace is not None:
            entry[TRACE_FIELD] = self.trace_prefix + trace.trace_id
            if trace.span_id:
                entry[SPAN_FIELD] = trace.span_id
            entry[SAMPLED_FIELD] = trace.sampled
        request = getattr(record, "http_request", None)
        if request is not None:
            entry["httpRequest"] = request
        if record.exc_info:
            entry["stack_trace"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


class SecretFilter(logging.Filter):
    """Replace every configured secret in a record's final message with a mask."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        message = record.getMessage()
        masked = message
        for secret in self.secrets:
            masked = masked.replace(secret, MASK)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def secrets_of(settings: Settings) -> list[str]:
    found = [s.get_secret_value() for s in (settings.bearer_token, settings.db_password) if s is not None]
    if settings.database_url is not None:
        password = urlsplit(settings.database_url.get_secret_value()).password
        if password:
            found.append(password)
    return found


def configure_logging(settings: Settings) -> None:
    """Install one stderr handler on the root logger (idempotent: replaces what it installed)."""
    handler = logging.StreamHandler(sys.stderr)
    if settings.log_format == "json":
        handler.setFormatter(JsonFormatter(settings.trace_project))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(SecretFilter(secrets_of(settings)))
    handler.set_name("loist")
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if h.get_name() != "loist"] + [handler]
    root.setLevel(settings.log_level)
    # Alembic narrates every start-up at INFO (plugins, dialect); `loist db` reports what it did itself.
    # httpx logs every request at INFO: the URL of each download (a signed link's token with it) in
    # the middle of `loist ingest`'s output. The ingest reports its own outcome.
    for chatty in ("alembic", "httpx"):
        logging.getLogger(chatty).setLevel(logging.DEBUG if settings.log_level == "DEBUG" else logging.WARNING)
