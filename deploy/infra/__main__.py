"""Pulumi entry point: ``pulumi up -s staging`` / ``pulumi up -s production`` (from deploy/infra).

Reads the stack configuration, turns it into an EnvSpec (loist_infra.stackconfig) and builds one
isolated environment. The tests run this very file under Pulumi's mocks.
"""

import pulumi
from loist_infra.environment import LoistEnvironment
from loist_infra.stackconfig import LOIST_KEYS, spec_from_config

gcp_config = pulumi.Config("gcp")
loist_config = pulumi.Config("loist")
spec = spec_from_config(
    pulumi.get_stack(),
    {"project": gcp_config.get("project"), "region": gcp_config.get("region")},
    {key: loist_config.get(key) for key in LOIST_KEYS},
)
environment = LoistEnvironment(spec)

pulumi.export("environment", spec.environment)
pulumi.export("embed_base_url", environment.embed_base_url)
pulumi.export("service_url", environment.service.uri)
pulumi.export("service", spec.service_name)
pulumi.export("migration_job", spec.job_name)
pulumi.export("image_repo", spec.image_repo)
pulumi.export("bucket", environment.bucket.name)
pulumi.export("sql_connection_name", environment.database.instance.connection_name)
pulumi.export("runtime_service_account", environment.runtime_account.email)
pulumi.export("deployer_service_account", environment.deployer.email)
pulumi.export("secrets", spec.secret_names)
if environment.edge is not None:  # point the domain's DNS A record here
    pulumi.export("load_balancer_ip", environment.edge.address.address)
