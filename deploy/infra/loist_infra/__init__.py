"""Loist's Google Cloud infrastructure as a Pulumi (Python) program.

``envspec`` names things (no Pulumi import); the other modules each build one concern from an
:class:`~loist_infra.envspec.EnvSpec`; :class:`~loist_infra.environment.LoistEnvironment` composes
them into one environment. ``__main__.py`` (one directory up) reads the stack config and builds it.
"""
