"""docs/self-hosting.md cannot drift: its settings pass ``loist config check``, its nginx site passes
``nginx -t`` (Debian's nginx, with a throwaway certificate), its units run the real commands."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from loist.config import Settings
from tests.deploy.conftest import ROOT

DOC = (ROOT / "docs" / "self-hosting.md").read_text(encoding="utf-8")


def _block(language: str, containing: str = "") -> str:
    blocks = re.findall(rf"```{language}\n(.*?)```", DOC, flags=re.DOTALL)
    return next(block for block in blocks if containing in block)


def test_the_documented_settings_pass_the_configuration_check(tmp_path: Path) -> None:
    values: dict[str, str] = {}
    for line in _block("sh", "EMBED_BASE_URL=").splitlines():
        name, _, rest = line.partition("=")
        values[name.strip().lower()] = rest.split("#", 1)[0].strip()
    assert values["auth_enabled"] == "true" and values["embed_base_url"].startswith("https://")
    values["bearer_token"] = "x" * 64  # the placeholder
    values["loist_data_dir"] = str(tmp_path)
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    assert settings.problems() == []
    assert settings.public_base_url == "https://music.example.com"


def test_the_units_run_the_real_commands() -> None:
    service = _block("ini", "ExecStart=/opt/loist/.venv/bin/loist serve")
    assert "EnvironmentFile=/etc/loist/loist.env" in service and "ReadWritePaths=/var/lib/loist" in service
    assert "loist backup /srv/backups/loist/" in _block("ini", "Type=oneshot")
    assert "OnCalendar=" in _block("ini", "[Timer]")


@pytest.mark.skipif(shutil.which("nginx") is None or shutil.which("openssl") is None, reason="needs nginx and openssl")
def test_the_nginx_site_is_valid(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=music.example.com",
         "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    site = _block("nginx", "server_name music.example.com")
    site = site.replace("/etc/letsencrypt/live/music.example.com/fullchain.pem", str(cert))
    site = site.replace("/etc/letsencrypt/live/music.example.com/privkey.pem", str(key))
    site = site.replace("listen 443", "listen 127.0.0.1:18443").replace("listen [::]:443", "listen [::1]:18443")
    site = site.replace("listen 80;", "listen 127.0.0.1:18080;").replace("listen [::]:80;", "listen [::1]:18080;")
    conf = tmp_path / "nginx.conf"
    conf.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\naccess_log off;\nclient_body_temp_path {tmp_path};\n{site}\n}}\n"
    )
    done = subprocess.run(["nginx", "-t", "-q", "-c", str(conf), "-p", str(tmp_path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
