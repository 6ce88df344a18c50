"""Header and body size limits, and the limits' configuration keys."""
from __future__ import annotations

import pytest

from registry.app import create_app
from registry.config import Config, LimitsConfig

from .conftest import err


@pytest.fixture
async def open_client(aiohttp_client, tmp_path, database_url):
    """Berth without auth, with small header limits."""
    cfg = Config(data_dir=tmp_path / "data", database_url=database_url)
    cfg.auth.enabled = False
    cfg.limits = LimitsConfig(max_header_bytes=2000, max_header_field=1024, max_headers=20)
    cfg.max_manifest_size = 1000
    return await aiohttp_client(create_app(cfg))


async def test_headers_past_max_header_bytes_are_431(open_client):
    headers = {f"X-Pad-{i}": "p" * 500 for i in range(5)}  # each line fits, together they do not
    e = await err(await open_client.get("/v2/", headers=headers), 431, "SIZE_INVALID")
    assert "max_header_bytes" in e["message"] and e["detail"]["limit"] == 2000
    assert (await open_client.get("/v2/", headers={"X-Pad": "p" * 500})).status == 200


async def test_a_header_line_past_max_header_field_is_refused_by_the_parser(open_client):
    r = await open_client.get("/v2/", headers={"X-Long": "p" * 2000})
    assert r.status == 400


async def test_too_many_header_lines_are_refused_by_the_parser(open_client):
    r = await open_client.get("/v2/", headers={f"X-N-{i}": "1" for i in range(30)})
    assert r.status == 400


async def test_a_body_past_max_manifest_size_is_413(open_client):
    r = await open_client.put("/v2/a/b/manifests/v1", data=b"{" + b" " * 2000 + b"}",
                              headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    await err(r, 413, "SIZE_INVALID")


def test_limits_from_yaml_and_environment(tmp_path):
    p = tmp_path / "berth.yaml"
    p.write_text("limits:\n  rate_per_principal: 7\n  burst_per_tenant: 9\n  max_headers: 50\n")
    cfg = Config.load(p, env={"BERTH_LIMITS_RATE_PER_TENANT": "11", "BERTH_LIMITS_MAX_UPLOAD_SESSIONS_PER_PRINCIPAL": "3",
                              "BERTH_LIMITS_BURST_PER_PRINCIPAL": "13", "BERTH_LIMITS_MAX_HEADER_BYTES": "4096"})
    lim = cfg.limits
    assert (lim.rate_per_principal, lim.burst_per_tenant, lim.max_headers) == (7, 9, 50)
    assert (lim.rate_per_tenant, lim.max_upload_sessions_per_principal, lim.burst_per_principal,
            lim.max_header_bytes) == (11, 3, 13, 4096)
    with pytest.raises(ValueError):
        Config.load(_write(tmp_path, "limits:\n  rate: 1\n"), env={})


def test_the_shipped_configuration_file_states_the_defaults():
    from pathlib import Path

    shipped = Config.load(Path(__file__).parents[2] / "config" / "berth.yaml", env={})
    assert shipped.limits == LimitsConfig()


def _write(tmp_path, text: str):
    p = tmp_path / "other.yaml"
    p.write_text(text)
    return p
