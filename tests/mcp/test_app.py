"""The in-chat player's resource metadata (loist.mcp.app): the CSP admits exactly what it loads."""

from __future__ import annotations

from pathlib import Path

from loist.config import Settings
from loist.mcp.app import GCS_ORIGIN, PLAYER_URI, player_app, player_csp


def test_csp_admits_the_public_origin_and_cloud_storage_only_when_streams_redirect_there(tmp_path: Path) -> None:
    local = Settings(_env_file=None, data_dir=tmp_path, embed_base_url="https://music.example.com/base")
    assert player_csp(local).model_dump(by_alias=True, exclude_none=True) == {
        "connectDomains": ["https://music.example.com"], "resourceDomains": ["https://music.example.com"],
    }
    gcs = local.model_copy(update={"storage_backend": "gcs", "gcs_bucket_name": "b"})
    assert player_csp(gcs).model_dump(by_alias=True, exclude_none=True) == {
        "connectDomains": ["https://music.example.com"],
        "resourceDomains": ["https://music.example.com", GCS_ORIGIN],
    }


def test_the_app_is_one_ui_resource_served_as_an_mcp_app(tmp_path: Path) -> None:
    [binding] = player_app(Settings(_env_file=None, data_dir=tmp_path)).resources()
    resource = binding.resource
    assert resource.uri == PLAYER_URI and resource.mime_type == "text/html;profile=mcp-app"
    html = resource.text  # type: ignore[attr-defined]
    assert "ui/initialize" in html and "ui/notifications/tool-result" in html and "<script" in html
    assert "http://" not in html.replace("http://www.w3.org", "") and "https://" not in html  # nothing external
