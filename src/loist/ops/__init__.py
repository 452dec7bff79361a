"""Operator tools that are clients of a deployment: the deployment check and the Docker-free stack."""
