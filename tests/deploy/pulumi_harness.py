"""Run deploy/infra/__main__.py for one stack under Pulumi's mocks; print what it registered.

Run as a subprocess (``python -m tests.deploy.pulumi_harness STACK [key=value ...]``) because
the Pulumi runtime is process-global: one fresh process per stack keeps staging and production
from seeing each other's resources. No cloud and no Pulumi CLI are involved: the mocks below
stand in for the engine and the Google provider, and record every resource's inputs exactly as
the provider would receive them (camelCase, Outputs resolved).

The mocks compute the few outputs Google would (emails, connection names, ids) from the inputs,
so cross-resource references (a secret's value is the instance's connection name) can be
followed in the tests.
"""

from __future__ import annotations

import json
import runpy
import sys
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime import mocks

INFRA = Path(__file__).resolve().parents[2] / "deploy" / "infra"
PROJECT_NUMBER = "123456789012"


class RecordingMocks(pulumi.runtime.Mocks):
    def __init__(self, project: str, region: str) -> None:
        self.project = project
        self.region = region
        self.resources: list[dict[str, Any]] = []
        self.calls: list[dict[str, Any]] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict]:
        inputs = dict(args.inputs)
        outputs = dict(inputs)
        rid = f"{args.name}-id"
        typ = args.typ
        if typ == "gcp:serviceaccount/account:Account":
            email = f"{inputs['accountId']}@{self.project}.iam.gserviceaccount.com"
            outputs.update(
                email=email,
                name=f"projects/{self.project}/serviceAccounts/{email}",
                member=f"serviceAccount:{email}",
            )
            rid = outputs["name"]
        elif typ == "gcp:secretmanager/secret:Secret":
            rid = f"projects/{self.project}/secrets/{inputs['secretId']}"
            outputs["name"] = rid
        elif typ == "gcp:sql/databaseInstance:DatabaseInstance":
            outputs["connectionName"] = f"{self.project}:{self.region}:{inputs['name']}"
            outputs["privateIpAddress"] = "10.20.0.3"
        elif typ == "gcp:storage/bucket:Bucket":
            outputs["url"] = f"gs://{inputs['name']}"
        elif typ == "gcp:cloudrunv2/service:Service":
            outputs["uri"] = f"https://{inputs['name']}-{PROJECT_NUMBER}.{self.region}.run.app"
        elif typ == "gcp:compute/network:Network":
            rid = f"projects/{self.project}/global/networks/{inputs['name']}"
        elif typ == "gcp:artifactregistry/repository:Repository":
            outputs["name"] = inputs["repositoryId"]
        elif typ == "gcp:monitoring/customService:CustomService":
            outputs["name"] = f"projects/{self.project}/services/{inputs['serviceId']}"
        elif typ == "gcp:monitoring/slo:Slo":
            rid = f"projects/{self.project}/services/{inputs['service']}/serviceLevelObjectives/{inputs['sloId']}"
            outputs["name"] = rid
        elif typ == "gcp:monitoring/uptimeCheckConfig:UptimeCheckConfig":
            outputs["uptimeCheckId"] = f"{args.name}-a1b2c3"
            rid = f"projects/{self.project}/uptimeCheckConfigs/{outputs['uptimeCheckId']}"
            outputs["name"] = rid
        elif typ == "gcp:monitoring/notificationChannel:NotificationChannel":
            rid = f"projects/{self.project}/notificationChannels/{len(self.resources) + 1000}"
            outputs["name"] = rid
        elif typ == "random:index/randomPassword:RandomPassword":
            # A deterministic stand-in with the requested length and alphabet.
            outputs["result"] = ("Ab3" * 100)[: int(inputs["length"])]
        self.resources.append({"type": typ, "name": args.name, "id": rid, "inputs": inputs})
        return rid, outputs

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict, list]:
        self.calls.append({"token": args.token, "args": dict(args.args)})
        if args.token == "gcp:organizations/getProject:getProject":
            return {"projectId": self.project, "number": PROJECT_NUMBER, "name": self.project}, []
        return {}, []


def load_stack_config(stack: str, overrides: dict[str, str]) -> dict[str, str]:
    """The stack file's config, as ``pulumi up`` would see it (plus test overrides)."""
    data = yaml.safe_load((INFRA / f"Pulumi.{stack}.yaml").read_text()) or {}
    config = {str(k): str(v) for k, v in (data.get("config") or {}).items()}
    config.update(overrides)
    return config


def run_stack(stack: str, overrides: dict[str, str]) -> dict[str, Any]:
    config = load_stack_config(stack, overrides)
    recorder = RecordingMocks(config["gcp:project"], config["gcp:region"])
    pulumi.runtime.set_mocks(recorder, project="loist", stack=stack, preview=False)
    pulumi.runtime.set_all_config(config)
    sys.path.insert(0, str(INFRA))
    exports: dict[str, Any] = {}

    def program() -> None:
        runpy.run_path(str(INFRA / "__main__.py"), run_name="__main__")

    mocks._sync_await(pulumi.runtime.stack.run_pulumi_func(program))
    return {
        "stack": stack,
        "config": config,
        "resources": recorder.resources,
        "calls": recorder.calls,
        "exports": exports,
    }


def main(argv: list[str]) -> int:
    stack = argv[0]
    overrides = dict(item.split("=", 1) for item in argv[1:])
    json.dump(run_stack(stack, overrides), sys.stdout, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
