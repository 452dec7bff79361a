"""Network policy as code (deploy/infra), both stacks under Pulumi's mocks (only the Google Cloud
control plane is mocked: the real program runs and the mocks record what it would create).

Production: the external HTTPS load balancer with a Cloud Armor policy (OWASP rules on the routes
that take input, a rate-based ban), Cloud Run ingress limited to it. Staging: public by default,
with auth on; in allow-list mode the same load balancer with a deny-by-default policy. Both:
egress firewall, TLS-only private Cloud SQL, image scanning on, the app's limits configured.
"""

from __future__ import annotations

import pytest
from loist_infra.edge import BAN_S, RATE_BAN_COUNT, WAF_RULES
from loist_infra.envspec import ENVIRONMENTS, EnvSpec
from loist_infra.network import CLOUD_SQL_PORTS, PRIVATE_RANGES
from loist_infra.stackconfig import spec_from_config

from tests.deploy.conftest import Stack, settings_from

pytestmark = pytest.mark.usefixtures("clean_settings_env")


@pytest.fixture(params=[*ENVIRONMENTS, "staging-allowlist"])
def stack(request: pytest.FixtureRequest, pulumi_stacks: dict[str, Stack]) -> Stack:
    return pulumi_stacks[request.param]


def fronted(stack: Stack) -> bool:
    return stack.name in ("production", "staging-allowlist")


def rules(stack: Stack) -> list[dict]:
    return sorted(stack.one("compute/securityPolicy:SecurityPolicy")["inputs"]["rules"], key=lambda r: r["priority"])


# --- the edge ------------------------------------------------------------------------------------------


def test_production_is_behind_the_load_balancer_and_cloud_run_admits_only_it(pulumi_stacks: dict[str, Stack]) -> None:
    prod = pulumi_stacks["production"]
    service = prod.one("cloudrunv2/service:Service")["inputs"]
    assert service["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    negs = {n["inputs"].get("cloudRun", {}).get("tag"): n for n in prod.of_type("compute/regionNetworkEndpointGroup:RegionNetworkEndpointGroup")}
    assert set(negs) == {None, "candidate"}  # the serving revision, and the one under test
    policy = prod.one("compute/securityPolicy:SecurityPolicy")
    backends = {b["inputs"]["backends"][0]["group"]: b for b in prod.of_type("compute/backendService:BackendService")}
    for neg in negs.values():
        assert neg["inputs"]["networkEndpointType"] == "SERVERLESS" and neg["inputs"]["cloudRun"]["service"] == service["name"]
        backend = backends[neg["id"]]["inputs"]
        assert backend["securityPolicy"] == policy["id"] and backend["loadBalancingScheme"] == "EXTERNAL_MANAGED"
    cert = prod.one("compute/managedSslCertificate:ManagedSslCertificate")["inputs"]
    assert cert["managed"]["domains"] == ["music.example.org", "candidate.music.example.org"]  # EMBED_BASE_URL's host
    (lb,) = [m["inputs"] for m in prod.of_type("compute/uRLMap:URLMap") if m["inputs"].get("hostRules")]
    assert lb["hostRules"] == [{"hosts": ["candidate.music.example.org"], "pathMatcher": "candidate"}]
    assert lb["pathMatchers"][0]["defaultService"] == backends[negs["candidate"]["id"]]["id"]
    assert lb["defaultService"] == backends[negs[None]["id"]]["id"]
    ports = {r["inputs"]["portRange"] for r in prod.of_type("compute/globalForwardingRule:GlobalForwardingRule")}
    assert ports == {"443", "80"}
    redirect = [m for m in prod.of_type("compute/uRLMap:URLMap") if m["inputs"].get("defaultUrlRedirect")]
    assert redirect and redirect[0]["inputs"]["defaultUrlRedirect"]["httpsRedirect"] is True


def test_production_cloud_armor_has_owasp_rules_on_input_routes_and_a_rate_ban(pulumi_stacks: dict[str, Stack]) -> None:
    ordered = rules(pulumi_stacks["production"])
    waf = [r for r in ordered if r["action"] == "deny(403)" and "expr" in r["match"]]
    assert len(waf) == len(WAF_RULES)
    for rule in waf:
        expression = rule["match"]["expr"]["expression"]
        assert "evaluatePreconfiguredWaf(" in expression and "'sensitivity': 1" in expression
        assert "request.path.startsWith('/oembed')" in expression and "request.path.startsWith('/embed/')" in expression
        assert ("startsWith('/mcp')" in expression) is ("xss" not in expression), expression
    (ban,) = [r for r in ordered if r["action"] == "rate_based_ban"]
    options = ban["rateLimitOptions"]
    assert options["enforceOnKey"] == "IP" and options["exceedAction"] == "deny(429)"
    assert options["rateLimitThreshold"] == {"count": RATE_BAN_COUNT, "intervalSec": 60}
    assert options["banDurationSec"] == BAN_S and ban["match"]["config"]["srcIpRanges"] == ["*"]
    # Order matters (first match wins, and the rate rule allows what conforms): WAF, ban, default.
    assert max(r["priority"] for r in waf) < ban["priority"] < ordered[-1]["priority"]
    assert ordered[-1]["action"] == "allow" and ordered[-1]["priority"] == 2147483647


def test_staging_allow_list_mode_denies_everyone_else(pulumi_stacks: dict[str, Stack]) -> None:
    staging = pulumi_stacks["staging-allowlist"]
    assert staging.one("cloudrunv2/service:Service")["inputs"]["ingress"] == "INGRESS_TRAFFIC_INTERNAL_LOAD_BALANCER"
    ordered = rules(staging)
    assert ordered[-1]["action"] == "deny(403)"
    allowed = [r for r in ordered if r["action"] == "rate_based_ban"]
    ranges = [cidr for r in allowed for cidr in r["match"]["config"]["srcIpRanges"]]
    assert ranges == [f"203.0.113.{n}/32" for n in range(11)] + ["198.51.100.0/24"]
    assert all(len(r["match"]["config"]["srcIpRanges"]) <= 10 for r in allowed) and len(allowed) == 2
    assert "*" not in ranges


def test_staging_without_an_allow_list_is_public_with_auth_on(pulumi_stacks: dict[str, Stack]) -> None:
    staging = pulumi_stacks["staging"]
    assert staging.one("cloudrunv2/service:Service")["inputs"]["ingress"] == "INGRESS_TRAFFIC_ALL"
    assert not staging.of_type("compute/securityPolicy:SecurityPolicy")
    settings = settings_from(staging.runtime_env(staging.one("cloudrunv2/service:Service")))
    assert settings.auth_enabled is True and settings.trusted_proxy_count == 1


def test_stack_config_refuses_an_allow_list_it_cannot_enforce() -> None:
    gcp = {"project": "p", "region": "us-central1"}
    with pytest.raises(ValueError, match="own domain"):
        spec_from_config("staging", gcp, {"allowedSourceRanges": "203.0.113.0/24"})
    with pytest.raises(ValueError, match="production is public"):
        spec_from_config("production", gcp, {"embedBaseUrl": "https://m.example", "allowedSourceRanges": "1.2.3.4/32"})
    with pytest.raises(ValueError):
        spec_from_config("staging", gcp, {"embedBaseUrl": "https://s.example", "allowedSourceRanges": "203.0.113.0/33"})
    assert EnvSpec(environment="staging", project="p", region="r").behind_load_balancer is False


# --- the app behind it ---------------------------------------------------------------------------------


def test_the_app_trusts_exactly_its_front_ends_and_keeps_its_limits_and_auth(stack: Stack) -> None:
    settings = settings_from(stack.runtime_env(stack.one("cloudrunv2/service:Service")))
    assert settings.auth_enabled is True and settings.rate_limits_enabled is True
    assert settings.trusted_proxy_count == (2 if fronted(stack) else 1)
    assert settings.problems() == []


# --- egress and the database ---------------------------------------------------------------------------


def test_egress_reaches_only_cloud_sql_inside_the_network(stack: Stack) -> None:
    tag = f"loist-run-{stack.config['loist:environment']}"
    for kind in ("cloudrunv2/service:Service", "cloudrunv2/job:Job"):
        resource = stack.one(kind)["inputs"]
        template = resource["template"] if kind.endswith("Service") else resource["template"]["template"]
        vpc = template["vpcAccess"]
        assert vpc["egress"] == "PRIVATE_RANGES_ONLY", kind
        assert vpc["networkInterfaces"][0]["tags"] == [tag], kind
    walls = {f["inputs"]["priority"]: f["inputs"] for f in stack.of_type("compute/firewall:Firewall")}
    allow, deny = walls[1000], walls[1100]
    for wall in (allow, deny):
        assert wall["direction"] == "EGRESS" and wall["targetTags"] == [tag]
        assert set(wall["destinationRanges"]) == set(PRIVATE_RANGES)
    assert allow["allows"] == [{"protocol": "tcp", "ports": list(CLOUD_SQL_PORTS)}]
    assert deny["denies"] == [{"protocol": "all"}]


def test_cloud_sql_requires_tls_and_has_no_public_ip(stack: Stack) -> None:
    ip = stack.one("sql/databaseInstance:DatabaseInstance")["inputs"]["settings"]["ipConfiguration"]
    assert ip["sslMode"] == "ENCRYPTED_ONLY"
    assert ip["ipv4Enabled"] is False and not ip.get("authorizedNetworks")


def test_image_scanning_is_on(stack: Stack) -> None:
    repo = stack.one("artifactregistry/repository:Repository")["inputs"]
    assert repo["vulnerabilityScanningConfig"]["enablementConfig"] == "INHERITED"
    apis = {s["inputs"]["service"] for s in stack.of_type("projects/service:Service")}
    assert {"containerscanning.googleapis.com", "ondemandscanning.googleapis.com"} <= apis
    roles = {r["inputs"]["role"] for r in stack.of_type("projects/iAMMember:IAMMember")
             if "deploy" in r["name"]}
    assert {"roles/ondemandscanning.admin", "roles/containeranalysis.occurrences.editor"} <= roles


# --- the pipeline reaches the candidate through the load balancer ---------------------------------------

FAKE_GCLOUD = """#!/usr/bin/env bash
echo "$*" >> "$GCLOUD_LOG"
case "$*" in
  "run services describe"*"--format=json"*) cat "$SERVICE_JSON" ;;
  "run services describe"*latestCreatedRevisionName*) echo loist-production-00042-abc ;;
esac
"""


@pytest.mark.parametrize(("ingress", "expected"), [
    ("internal-and-cloud-load-balancing", "https://candidate.music.example.org"),
    ("all", "https://sha-abc1234---loist-production-123.us-central1.run.app"),
])
def test_the_deploy_step_targets_the_candidate_where_it_can_be_reached(tmp_path, ingress: str, expected: str) -> None:
    """The deploy step of cloudbuild.yaml, run by bash with a recording stand-in for gcloud."""
    import subprocess

    import yaml

    from tests.deploy.conftest import ROOT

    step = next(s for s in yaml.safe_load((ROOT / "cloudbuild.yaml").read_text())["steps"] if s["id"] == "deploy")
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    script = step["script"].replace("/workspace/", f"{workspace}/")
    (tmp_path / "bin").mkdir()
    gcloud = tmp_path / "bin" / "gcloud"
    gcloud.write_text(FAKE_GCLOUD)
    gcloud.chmod(0o755)
    service = {
        "metadata": {"annotations": {"run.googleapis.com/ingress": ingress}},
        "status": {"url": "https://loist-production-123.us-central1.run.app"},
        "spec": {"template": {"spec": {"containers": [{"env": [
            {"name": "EMBED_BASE_URL", "value": "https://music.example.org"}]}]}}},
    }
    (tmp_path / "service.json").write_text(__import__("json").dumps(service))
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "GCLOUD_LOG": str(tmp_path / "calls"),
           "SERVICE_JSON": str(tmp_path / "service.json"), "_REGION": "us-central1", "PROJECT_ID": "p",
           "_REPOSITORY": "loist-production", "_IMAGE": "loist", "SHORT_SHA": "abc1234", "_SERVICE": "loist-production"}
    done = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert (workspace / "candidate_url").read_text().strip() == expected
    calls = (tmp_path / "calls").read_text()
    assert f"ALLOWED_HOSTS={expected.split('://')[1]}" in calls
    assert ("--update-tags candidate=loist-production-00042-abc" in calls) is (ingress != "all")
