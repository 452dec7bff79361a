""".env.example lists every setting, nothing else, and is itself a usable, secret-free config."""

from __future__ import annotations

import re

import pytest

from loist.config import Settings
from tests.deploy.conftest import ROOT, settings_env_names

EXAMPLE = ROOT / ".env.example"
ASSIGNMENT = re.compile(r"^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$")


def entries() -> list[tuple[str, str, bool]]:
    """(name, value, active) for every ``NAME=value`` or ``# NAME=value`` line."""
    found = []
    for line in EXAMPLE.read_text().splitlines():
        match = ASSIGNMENT.match(line.strip())
        if match:
            found.append((match.group(2), match.group(3), match.group(1) is None))
    return found


def test_every_setting_appears_once_and_nothing_else() -> None:
    names = [name for name, _, _ in entries()]
    assert sorted(set(names)) == sorted(names), "a setting is listed twice"
    assert set(names) == settings_env_names()


@pytest.mark.usefixtures("clean_settings_env")
def test_the_active_lines_are_a_valid_local_configuration(tmp_path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(EXAMPLE.read_text())
    settings = Settings(_env_file=env_file)
    assert settings.problems() == []
    assert settings.environment == "local" and settings.database_dialect == "sqlite"
    active = {name for name, _, is_active in entries() if is_active}
    assert {"ENVIRONMENT", "STORAGE_BACKEND", "AUTH_ENABLED", "ALLOW_PRIVATE_URLS"} <= active


def test_no_secret_has_a_value() -> None:
    for name, value, active in entries():
        if name in {"BEARER_TOKEN", "DB_PASSWORD", "DATABASE_URL"}:
            assert not active, f"{name} must stay commented out"
            assert value in ("", "change-me") or "change-me" in value, f"{name}: {value!r}"
