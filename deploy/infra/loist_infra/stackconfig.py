"""Turn a Pulumi stack's configuration into an :class:`EnvSpec`.

Kept apart from ``__main__.py`` so the tests build the spec from ``Pulumi.<stack>.yaml`` exactly
the way ``pulumi up`` does.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping

from loist_infra.envspec import ENVIRONMENTS, CloudEnvironment, EnvSpec

#: Config keys (namespace ``loist:``) the program reads; everything else has a safe default.
LOIST_KEYS = (
    "environment",
    "embedBaseUrl",
    "image",
    "stagingObjectMaxAgeDays",
    "logLevel",
    "githubRepo",
    "alertEmails",
    "alertChannels",
    "sloAvailability",
    "sloLatencyMs",
    "allowedSourceRanges",
)


def _list(value: str | None) -> tuple[str, ...]:
    """``"a@x.org, b@x.org"`` -> ``("a@x.org", "b@x.org")``."""
    return tuple(item.strip() for item in (value or "").split(",") if item.strip())


def _objective(stack: str, key: str, value: str | None, kind: type, low: float, high: float) -> float | None:
    if not value:
        return None
    try:
        number = kind(value)
    except ValueError:
        raise ValueError(f"stack {stack!r}: loist:{key} must be a number, got {value!r}") from None
    if not low < number < high:
        raise ValueError(f"stack {stack!r}: loist:{key} must be between {low} and {high}, got {value!r}")
    return number


def spec_from_config(stack: str, gcp: Mapping[str, str | None], loist: Mapping[str, str | None]) -> EnvSpec:
    """Build the spec; fail loudly on a stack that is not one of the two environments."""
    environment = loist.get("environment") or stack
    if environment not in ENVIRONMENTS:
        raise ValueError(
            f"stack {stack!r}: loist:environment must be one of {ENVIRONMENTS}, got {environment!r}"
        )
    project = gcp.get("project")
    region = gcp.get("region")
    if not project or not region:
        raise ValueError(f"stack {stack!r}: set gcp:project and gcp:region")
    env: CloudEnvironment = environment  # type: ignore[assignment]
    age = loist.get("stagingObjectMaxAgeDays")
    ranges = _list(loist.get("allowedSourceRanges"))
    if ranges and env == "production":
        raise ValueError(f"stack {stack!r}: loist:allowedSourceRanges is staging's allow-list mode; production is public")
    for cidr in ranges:
        ipaddress.ip_network(cidr)  # a typo fails here, not in the cloud
    spec = EnvSpec(
        environment=env,
        project=project,
        region=region,
        embed_base_url=(loist.get("embedBaseUrl") or None),
        image=(loist.get("image") or None),
        staging_object_max_age_days=int(age) if age else 30,
        log_level=(loist.get("logLevel") or "INFO"),
        github_repo=(loist.get("githubRepo") or None),
        alert_emails=_list(loist.get("alertEmails")),
        alert_channels=_list(loist.get("alertChannels")),
        slo_availability=_objective(stack, "sloAvailability", loist.get("sloAvailability"), float, 0.5, 1.0),
        slo_latency_ms=_objective(stack, "sloLatencyMs", loist.get("sloLatencyMs"), int, 0, 60_000),  # type: ignore[arg-type]
        allowed_source_ranges=ranges,
    )
    if spec.behind_load_balancer and not spec.public_host:
        raise ValueError(
            f"stack {stack!r}: behind the HTTPS load balancer the service needs its own domain: "
            "pulumi config set loist:embedBaseUrl https://<domain> (its certificate is issued for it)"
        )
    return spec
