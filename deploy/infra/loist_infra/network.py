"""A private network per environment, so Cloud SQL needs no public IP.

Cloud SQL with only a private IP is reached through private services access (a reserved range
peered with Google's service network); Cloud Run reaches it with Direct VPC egress.
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
    return Network(vpc=vpc, subnet=subnet, peering=peering)
