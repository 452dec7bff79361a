"""The edge: an external HTTPS load balancer with a Cloud Armor policy in front of Cloud Run.

Production always has it; staging has it in allow-list mode (``loist:allowedSourceRanges``).
Where it stands, Cloud Run's ingress admits only it (``EnvSpec.run_ingress``), so the policy cannot
be walked around through the ``run.app`` URL.

The Cloud Armor policy, in the order it is evaluated (lowest priority number first):

- ``WAF_*`` (deny 403): Google's preconfigured OWASP Core Rule Set rules at sensitivity 1 (the fewest false
  positives), on the routes that take input: ``/mcp`` (JSON-RPC bodies), ``/oembed`` (a URL in the
  query), ``/embed/`` and ``/audio/`` (ids in the path). Cross-site scripting rules are not applied
  to ``/mcp``: track titles are free text a person wrote (``<b>Sons</b>`` is a band name there), the
  app escapes them on every page it renders.
- ``RATE_BAN``: a request that passed the WAF is allowed, unless its address sent more than
  ``RATE_BAN_COUNT`` requests in ``RATE_BAN_INTERVAL_S`` (429), or more than twice that (banned for
  ``BAN_S``). The app's own per-client limits (``RATE_LIMIT_*``) stay in force behind it; this
  rule is the one that holds across every instance without a shared Redis. It matches every
  address in production, and only the allow-listed ranges in staging's allow-list mode.
- default: allow (production); deny 403 in allow-list mode, so an address outside the ranges
  never reaches the service.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from loist_infra.envspec import EnvSpec

RATE_BAN_COUNT = 1200  # per address per interval: twice RATE_LIMIT_MCP's default, well under a flood
RATE_BAN_INTERVAL_S = 60
BAN_S = 600
DEFAULT_PRIORITY = 2147483647
WAF_PRIORITY = 1000
RATE_BAN_PRIORITY = 2000
MAX_RANGES_PER_RULE = 10  # Cloud Armor's limit for a basic source-range match
#: The revision tag the pipelines move to each new revision before it gets traffic; the load
#: balancer serves it at ``candidate.<domain>`` (Cloud Run's tagged run.app URLs are closed by the
#: ingress setting), so the deployment check reaches the candidate through the same policy.
CANDIDATE_TAG = "candidate"

INPUT_ROUTES = "request.path.startsWith('/mcp') || request.path.startsWith('/oembed') || " \
               "request.path.startsWith('/embed/') || request.path.startsWith('/audio/')"
#: Preconfigured rule sets (OWASP CRS 3.3) and whether they also apply to /mcp.
WAF_RULES: dict[str, bool] = {
    "sqli-v33-stable": True,
    "lfi-v33-stable": True,
    "rfi-v33-stable": True,
    "rce-v33-stable": True,
    "protocolattack-v33-stable": True,
    "scannerdetection-v33-stable": True,
    "methodenforcement-v33-stable": True,
    "xss-v33-stable": False,
}


@dataclass
class Edge:
    policy: gcp.compute.SecurityPolicy
    address: gcp.compute.GlobalAddress
    backend: gcp.compute.BackendService
    https_rule: gcp.compute.GlobalForwardingRule


def waf_expression(rule_set: str, on_mcp: bool) -> str:
    routes = INPUT_ROUTES if on_mcp else INPUT_ROUTES.replace("request.path.startsWith('/mcp') || ", "")
    return f"({routes}) && evaluatePreconfiguredWaf('{rule_set}', {{'sensitivity': 1}})"


def policy_rules(spec: EnvSpec) -> list[gcp.compute.SecurityPolicyRuleArgs]:
    """WAF denials first, then the rate ban (which allows what conforms), then the default."""
    rules = [
        gcp.compute.SecurityPolicyRuleArgs(
            priority=WAF_PRIORITY + n,
            action="deny(403)",
            description=f"OWASP CRS {rule_set} on the routes that take input",
            match=gcp.compute.SecurityPolicyRuleMatchArgs(
                expr=gcp.compute.SecurityPolicyRuleMatchExprArgs(expression=waf_expression(rule_set, on_mcp))
            ),
        )
        for n, (rule_set, on_mcp) in enumerate(WAF_RULES.items())
    ]
    ranges = list(spec.allowed_source_ranges)
    chunks = [ranges[i : i + MAX_RANGES_PER_RULE] for i in range(0, len(ranges), MAX_RANGES_PER_RULE)] or [["*"]]
    rules += [_rate_ban(RATE_BAN_PRIORITY + n, chunk) for n, chunk in enumerate(chunks)]
    rules.append(gcp.compute.SecurityPolicyRuleArgs(
        priority=DEFAULT_PRIORITY,
        action="deny(403)" if ranges else "allow",
        description="default: deny, only the allow-listed ranges get in" if ranges else "default: allow",
        match=_sources(["*"]),
    ))
    return rules


def _sources(ranges: list[str]) -> gcp.compute.SecurityPolicyRuleMatchArgs:
    return gcp.compute.SecurityPolicyRuleMatchArgs(
        versioned_expr="SRC_IPS_V1", config=gcp.compute.SecurityPolicyRuleMatchConfigArgs(src_ip_ranges=ranges)
    )


def _rate_ban(priority: int, ranges: list[str]) -> gcp.compute.SecurityPolicyRuleArgs:
    """Requests from ``ranges`` are allowed at up to RATE_BAN_COUNT a minute per address; past
    that 429, and past twice that the address is banned for BAN_S."""
    return gcp.compute.SecurityPolicyRuleArgs(
        priority=priority,
        action="rate_based_ban",
        description=f"per address: over {RATE_BAN_COUNT}/min 429, over {2 * RATE_BAN_COUNT}/min banned {BAN_S} s",
        match=_sources(ranges),
        rate_limit_options=gcp.compute.SecurityPolicyRuleRateLimitOptionsArgs(
            conform_action="allow",
            exceed_action="deny(429)",
            enforce_on_key="IP",
            rate_limit_threshold=gcp.compute.SecurityPolicyRuleRateLimitOptionsRateLimitThresholdArgs(
                count=RATE_BAN_COUNT, interval_sec=RATE_BAN_INTERVAL_S
            ),
            ban_threshold=gcp.compute.SecurityPolicyRuleRateLimitOptionsBanThresholdArgs(
                count=2 * RATE_BAN_COUNT, interval_sec=RATE_BAN_INTERVAL_S
            ),
            ban_duration_sec=BAN_S,
        ),
    )


def _backend(
    spec: EnvSpec,
    name: str,
    service: gcp.cloudrunv2.Service,
    policy: gcp.compute.SecurityPolicy,
    tag: str | None,
    opts: pulumi.ResourceOptions,
) -> gcp.compute.BackendService:
    """A serverless NEG for the service (its revision ``tag``, or the one serving traffic), and a
    backend service for it behind ``policy``."""
    neg = gcp.compute.RegionNetworkEndpointGroup(
        f"{name}-neg",
        name=f"{name}-neg",
        region=spec.region,
        network_endpoint_type="SERVERLESS",
        cloud_run=gcp.compute.RegionNetworkEndpointGroupCloudRunArgs(service=service.name, tag=tag),
        opts=opts,
    )
    return gcp.compute.BackendService(
        name,
        name=name,
        load_balancing_scheme="EXTERNAL_MANAGED",
        protocol="HTTPS",
        security_policy=policy.id,
        backends=[gcp.compute.BackendServiceBackendArgs(group=neg.id)],
        log_config=gcp.compute.BackendServiceLogConfigArgs(enable=True, sample_rate=1.0),
        opts=opts,
    )


def build_edge(spec: EnvSpec, service: gcp.cloudrunv2.Service, opts: pulumi.ResourceOptions) -> Edge:
    """Policy, serverless NEG, backend, URL map, managed certificate, HTTPS and HTTP->HTTPS rules."""
    name = f"loist-{spec.suffix}"
    policy = gcp.compute.SecurityPolicy(
        f"{name}-armor",
        name=f"{name}-armor",
        description=f"Cloud Armor for Loist {spec.environment} (loist_infra.edge)",
        type="CLOUD_ARMOR",
        rules=policy_rules(spec),
        adaptive_protection_config=gcp.compute.SecurityPolicyAdaptiveProtectionConfigArgs(
            layer7_ddos_defense_config=gcp.compute.SecurityPolicyAdaptiveProtectionConfigLayer7DdosDefenseConfigArgs(
                enable=True
            ),
        ),
        opts=opts,
    )
    backend = _backend(spec, f"{name}-backend", service, policy, None, opts)
    candidate = _backend(spec, f"{name}-candidate", service, policy, CANDIDATE_TAG, opts)
    address = gcp.compute.GlobalAddress(f"{name}-ip", name=f"{name}-ip", opts=opts)
    host = spec.public_host or ""
    certificate = gcp.compute.ManagedSslCertificate(
        f"{name}-cert",
        name=f"{name}-cert",
        managed=gcp.compute.ManagedSslCertificateManagedArgs(domains=[host, f"{CANDIDATE_TAG}.{host}"]),
        opts=opts,
    )
    url_map = gcp.compute.URLMap(
        f"{name}-lb",
        name=f"{name}-lb",
        default_service=backend.id,
        host_rules=[gcp.compute.URLMapHostRuleArgs(hosts=[f"{CANDIDATE_TAG}.{host}"], path_matcher="candidate")],
        path_matchers=[gcp.compute.URLMapPathMatcherArgs(name="candidate", default_service=candidate.id)],
        opts=opts,
    )
    https_proxy = gcp.compute.TargetHttpsProxy(
        f"{name}-https", name=f"{name}-https", url_map=url_map.id, ssl_certificates=[certificate.id], opts=opts
    )
    https_rule = gcp.compute.GlobalForwardingRule(
        f"{name}-https",
        name=f"{name}-https",
        load_balancing_scheme="EXTERNAL_MANAGED",
        ip_address=address.address,
        port_range="443",
        target=https_proxy.id,
        opts=opts,
    )
    # Plain HTTP only redirects to HTTPS (the app's pages and tokens never travel in clear).
    redirect = gcp.compute.URLMap(
        f"{name}-http-redirect",
        name=f"{name}-http-redirect",
        default_url_redirect=gcp.compute.URLMapDefaultUrlRedirectArgs(https_redirect=True, strip_query=False),
        opts=opts,
    )
    http_proxy = gcp.compute.TargetHttpProxy(f"{name}-http", name=f"{name}-http", url_map=redirect.id, opts=opts)
    gcp.compute.GlobalForwardingRule(
        f"{name}-http",
        name=f"{name}-http",
        load_balancing_scheme="EXTERNAL_MANAGED",
        ip_address=address.address,
        port_range="80",
        target=http_proxy.id,
        opts=opts,
    )
    return Edge(policy=policy, address=address, backend=backend, https_rule=https_rule)
