"""Settings: defaults, URL composition, profiles, masking, and docs that cannot drift."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from loist.config import Settings, build_settings, load_settings, mask_url, normalize_database_url
from loist.errors import ConfigInvalid, ErrorCode

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(__import__("os").environ):
        if name.upper() in {n.upper() for n in env_names()} or name.startswith(("DB_", "GCS_")):
            monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def env_names() -> list[str]:
    return [k for k in Settings().masked() if not k.startswith("(")]


def test_embedded_default_is_sqlite_and_local_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    s = Settings()
    assert s.environment == "local"
    assert s.sqlalchemy_url() == f"sqlite+aiosqlite:///{tmp_path / 'xdg' / 'loist' / 'loist.db'}"
    assert s.storage_backend == "local"
    assert s.blob_dir == tmp_path / "xdg" / "loist" / "blobs"
    assert s.public_base_url == "http://127.0.0.1:8080"
    assert s.problems() == []


def test_the_default_library_is_per_user_not_per_folder(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Wherever a command starts, the default library is the same folder: the platform's data folder."""
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    first = Settings().data_dir
    monkeypatch.chdir(tmp_path.parent)
    assert Settings().data_dir == first == tmp_path / "home" / ".local" / "share" / "loist"
    assert "LOIST_DATA_DIR" not in Settings().model_fields_set and "data_dir" not in Settings().model_fields_set


def test_tests_never_use_the_real_per_user_library() -> None:
    """tests/conftest.py points the platform's data folder at a throwaway one for the whole run."""
    home = Path("~").expanduser()
    assert not Settings().data_dir.is_relative_to(home / ".local" / "share")


def test_data_dir_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LOIST_DATA_DIR", str(tmp_path / "lib"))
    s = Settings()
    assert s.blob_dir == tmp_path / "lib" / "blobs"
    assert s.sqlalchemy_url().endswith("/lib/loist.db")


@pytest.mark.parametrize(
    ("plain", "expected"),
    [
        ("sqlite:///tmp/x.db", "sqlite+aiosqlite:///tmp/x.db"),
        ("sqlite:////abs/x.db", "sqlite+aiosqlite:////abs/x.db"),
        ("postgresql://u:p@h:5432/db", "postgresql+asyncpg://u:p@h:5432/db"),
        ("postgres://u:p@h/db", "postgresql+asyncpg://u:p@h/db"),
        ("postgresql+psycopg://u@h/db", "postgresql+asyncpg://u@h/db"),
    ],
)
def test_database_url_plain_forms(plain: str, expected: str) -> None:
    assert normalize_database_url(plain) == expected


def test_database_url_rejects_unknown_scheme(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://u:p@h/db")
    with pytest.raises(ConfigInvalid) as info:
        load_settings()
    assert info.value.code == ErrorCode.CONFIG_INVALID
    assert "not supported" in info.value.message
    assert "p@h" not in info.value.message or "********" in info.value.message


def test_db_parts_compose_a_url_with_quoted_password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_HOST", "10.1.2.3")
    monkeypatch.setenv("DB_NAME", "loist_mvp_staging")
    monkeypatch.setenv("DB_USER", "loist")
    monkeypatch.setenv("DB_PASSWORD", "p@ss/w:rd")
    assert Settings().sqlalchemy_url() == "postgresql+asyncpg://loist:p%40ss%2Fw%3Ard@10.1.2.3:5432/loist_mvp_staging"


def test_cloud_sql_connection_name_means_unix_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DB_CONNECTION_NAME", "proj:europe-west1:loist-staging")
    monkeypatch.setenv("DB_NAME", "loist_mvp_staging")
    monkeypatch.setenv("DB_USER", "loist")
    monkeypatch.setenv("DB_PASSWORD", "secret")
    url = Settings().sqlalchemy_url()
    assert url == "postgresql+asyncpg://loist:secret@/loist_mvp_staging?host=/cloudsql/proj:europe-west1:loist-staging"


def test_database_url_wins_over_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://a@b/c")
    monkeypatch.setenv("DB_HOST", "elsewhere")
    assert Settings().sqlalchemy_url() == "postgresql+asyncpg://a@b/c"


def test_secrets_are_masked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u:hunter2@h/db")
    monkeypatch.setenv("BEARER_TOKEN", "tok-very-secret")
    monkeypatch.setenv("DB_PASSWORD", "pw-secret")
    shown = repr(Settings().masked())
    for secret in ("hunter2", "tok-very-secret", "pw-secret"):
        assert secret not in shown
    assert "********" in shown
    assert mask_url("postgresql://u:hunter2@h/db") == "postgresql://u:********@h/db"


def test_csv_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORS_ORIGINS", "https://a.example, https://b.example")
    monkeypatch.setenv("ALLOWED_HOSTS", "loist-abc.a.run.app")
    s = Settings()
    assert s.cors_origins == ["https://a.example", "https://b.example"]
    assert s.allowed_hosts == ["loist-abc.a.run.app"]


def test_auth_without_token_is_invalid_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_ENABLED", "true")
    with pytest.raises(ConfigInvalid, match="BEARER_TOKEN"):
        load_settings()


SAFE_PRODUCTION = {
    "ENVIRONMENT": "production",
    "AUTH_ENABLED": "true",
    "BEARER_TOKEN": "x" * 40,
    "DATABASE_URL": "postgresql://loist:pw@10.0.0.5/loist",
    "STORAGE_BACKEND": "gcs",
    "GCS_BUCKET_NAME": "loist-audio-production",
    "EMBED_BASE_URL": "https://music.example.com",
}


def test_production_accepts_a_safe_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in SAFE_PRODUCTION.items():
        monkeypatch.setenv(key, value)
    assert load_settings().environment == "production"


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        ({"AUTH_ENABLED": "false"}, "AUTH_ENABLED=false"),
        ({"BEARER_TOKEN": "short"}, "32 characters"),
        ({"ALLOW_PRIVATE_URLS": "true"}, "ALLOW_PRIVATE_URLS"),
        ({"DATABASE_URL": "sqlite:///x.db"}, "SQLite"),
        ({"STORAGE_BACKEND": "local"}, "STORAGE_BACKEND=local"),
        ({"EMBED_BASE_URL": "http://music.example.com"}, "https EMBED_BASE_URL"),
    ],
)
def test_production_refuses_unsafe_settings(monkeypatch: pytest.MonkeyPatch, change: dict[str, str], complaint: str) -> None:
    for key, value in (SAFE_PRODUCTION | change).items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigInvalid) as info:
        load_settings()
    assert complaint in info.value.message


def test_invalid_value_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "not-a-port")
    with pytest.raises(ConfigInvalid):
        load_settings()


@pytest.mark.parametrize("build", [build_settings, load_settings])
def test_one_path_turns_a_refused_value_into_config_invalid(monkeypatch: pytest.MonkeyPatch, build: Any) -> None:
    monkeypatch.setenv("PORT", "not-a-port")
    with pytest.raises(ConfigInvalid) as info:
        build()
    assert info.value.code == ErrorCode.CONFIG_INVALID
    assert info.value.message.startswith("invalid configuration: ") and "port" in info.value.message
    monkeypatch.delenv("PORT")
    with pytest.raises(ConfigInvalid, match="server_transport"):
        build(server_transport="carrier-pigeon")  # overrides are validated the same way


def test_build_settings_leaves_the_profile_rules_to_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTH_ENABLED", "true")  # no BEARER_TOKEN: a problem, not a refused value
    settings = build_settings()
    assert any("BEARER_TOKEN" in p for p in settings.problems())
    with pytest.raises(ConfigInvalid, match="BEARER_TOKEN"):
        load_settings()


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SERVER_NAME=From Dotenv\nPORT=9999\n")
    s = Settings()
    assert s.server_name == "From Dotenv"
    assert s.port == 9999


def test_every_setting_is_documented() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z0-9_]+)` \|", doc, flags=re.M))
    missing = set(env_names()) - documented
    assert not missing, f"settings missing from docs/configuration.md: {sorted(missing)}"


def test_the_download_temp_budget_defaults_to_the_file_size_limit_and_cannot_be_below_it() -> None:
    assert Settings(_env_file=None, max_file_size_mb=200).download_temp_budget_bytes == 200 * 1024 * 1024
    roomy = Settings(_env_file=None, max_file_size_mb=200, download_temp_budget_mb=600)
    assert roomy.download_temp_budget_bytes == 600 * 1024 * 1024 and roomy.problems() == []
    tight = Settings(_env_file=None, max_file_size_mb=200, download_temp_budget_mb=100)
    assert any("DOWNLOAD_TEMP_BUDGET_MB (100) is below MAX_FILE_SIZE_MB (200)" in p for p in tight.problems())


def test_the_default_rates_are_rates() -> None:
    """The rate validator takes the defaults as they are (importing ``limits`` costs every command
    ~15 ms); so they must parse, and a bad value still does not."""
    from limits import parse

    for name in ("rate_limit_auth_failures", "rate_limit_ingest", "rate_limit_mcp", "rate_limit_public"):
        parse(Settings.model_fields[name].default)
        with pytest.raises(ValidationError, match="is not a rate"):
            Settings(_env_file=None, **{name: "often"})
