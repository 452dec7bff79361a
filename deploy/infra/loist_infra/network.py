"""A private network per environment, so Cloud SQL needs no public IP.

Cloud SQL with only a private IP is reached through private services access (a reserved range
peered with Google's service network); Cloud Run reaches it with Direct VPC egress, for private
ranges only (``PRIVATE_RANGES_ONLY``: a download from the internet leaves directly).

Egress policy: the service's and the job's VPC interfaces carry ``EnvSpec.run_network_tag``, and
the firewall lets them reach private addresses only on the Cloud SQL ports; every other private
destination is denied, so a fetch that got past the app's SSRF guard (loist.ingest.netguard) still
reaches nothing inside the network. The metadata server (169.254.169.254) is not in the VPC at all:
Cloud Run answers it inside the sandbox, so no firewall can close it; the app's SSRF guard refuses
every link-local address (and ``metadata.google.internal`` resolves to one), which is what keeps
fetches away from it (docs/security.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_gcp as gcp

from loist_infra.envspec import EnvSpec


@dataclass
class Network:
    vpc: gcp.compute.Network
    subnet: gcp.compute.Subnetwork
    peering: gcp.servicenetworking.Connection


def build_network(spec: EnvSpec, opts: pulumi.ResourceOptions) -> Network:
    vpc = gcp.compute.Network(
        spec.network_name,
        name=spec.network_name,
        auto_create_subnetworks=False,
        opts=opts,
    )
    subnet = gcp.compute.Subnetwork(
        f"{spec.network_name}-run",
        name=f"{spec.network_name}-run",
        network=vpc.id,
        region=spec.region,
        ip_cidr_range="10.8.0.0/24",
        private_ip_google_access=True,
        opts=opts,
    )
    reserved = gcp.compute.GlobalAddress(
        f"{spec.network_name}-services",
        name=f"{spec.network_name}-services",
        purpose="VPC_PEERING",
        address_type="INTERNAL",
        prefix_length=20,
        network=vpc.id,
        opts=opts,
    )
    peering = gcp.servicenetworking.Connection(
        f"{spec.network_name}-peering",
        network=vpc.id,
        service="servicenetworking.googleapis.com",
        reserved_peering_ranges=[reserved.name],
        opts=opts,
    )
    build_egress_policy(spec, vpc, opts)
    return Network(vpc=vpc, subnet=subnet, peering=peering)


#: Private destinations (RFC 1918, shared address space); Cloud SQL lives in the peered range.
PRIVATE_RANGES = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10")
#: PostgreSQL, and the port Cloud Run's built-in Cloud SQL connector uses.
CLOUD_SQL_PORTS = ("5432", "3307")


def build_egress_policy(spec: EnvSpec, vpc: gcp.compute.Network, opts: pulumi.ResourceOptions) -> None:
    tag = spec.run_network_tag
    gcp.compute.Firewall(
        f"{spec.network_name}-egress-sql",
        name=f"{spec.network_name}-egress-sql",
        network=vpc.id,
        direction="EGRESS",
        priority=1000,
        target_tags=[tag],
        destination_ranges=list(PRIVATE_RANGES),
        allows=[gcp.compute.FirewallAllowArgs(protocol="tcp", ports=list(CLOUD_SQL_PORTS))],
        description="Loist instances may reach Cloud SQL's private IP",
        opts=opts,
    )
    gcp.compute.Firewall(
        f"{spec.network_name}-egress-deny-private",
        name=f"{spec.network_name}-egress-deny-private",
        network=vpc.id,
        direction="EGRESS",
        priority=1100,
        target_tags=[tag],
        destination_ranges=list(PRIVATE_RANGES),
        denies=[gcp.compute.FirewallDenyArgs(protocol="all")],
        description="... and nothing else inside the network (SSRF defence in depth)",
        log_config=gcp.compute.FirewallLogConfigArgs(metadata="INCLUDE_ALL_METADATA"),
        opts=opts,
    )
