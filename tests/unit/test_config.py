"""registry.config: defaults < YAML < environment < flags; unknown keys rejected."""
from __future__ import annotations

from pathlib import Path

import pytest

from registry.config import AuthConfig, Config


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "berth.yaml"
    p.write_text(text)
    return p


def test_defaults():
    cfg = Config.load(None, env={})
    assert cfg.host == "127.0.0.1"
    assert cfg.port == 5000
    assert cfg.data_dir == Path("./data")
    assert cfg.max_manifest_size == 4 * 1024 * 1024
    assert cfg.database_url is None
    assert cfg.auth.enabled is True
    assert isinstance(cfg.auth, AuthConfig)


def test_yaml(tmp_path):
    p = write(tmp_path, """
host: 0.0.0.0
port: 6000
data_dir: /srv/berth
max_manifest_size: 1024
auth:
  enabled: false
  service: registry.example
  token_ttl: 60
""")
    cfg = Config.load(p, env={})
    assert cfg.host == "0.0.0.0"
    assert cfg.port == 6000
    assert cfg.data_dir == Path("/srv/berth")
    assert isinstance(cfg.data_dir, Path)
    assert cfg.max_manifest_size == 1024
    assert cfg.auth.enabled is False
    assert cfg.auth.service == "registry.example"
    assert cfg.auth.token_ttl == 60
    assert cfg.auth.issuer == "berth"  # untouched defaults remain


def test_yaml_dashes_accepted(tmp_path):
    cfg = Config.load(write(tmp_path, "max-manifest-size: 10\nauth:\n  token-ttl: 5\n"), env={})
    assert cfg.max_manifest_size == 10
    assert cfg.auth.token_ttl == 5


def test_empty_yaml(tmp_path):
    cfg = Config.load(write(tmp_path, ""), env={})
    assert cfg.port == 5000


@pytest.mark.parametrize("text", ["nope: 1\n", "auth:\n  nope: 1\n", "auth:\n  host: x\n"])
def test_unknown_key_rejected(tmp_path, text):
    with pytest.raises(ValueError, match="unknown configuration key"):
        Config.load(write(tmp_path, text), env={})


def test_non_mapping_rejected(tmp_path):
    with pytest.raises(ValueError):
        Config.load(write(tmp_path, "- a\n- b\n"), env={})
    with pytest.raises(ValueError):
        Config.load(write(tmp_path, "auth: 5\n"), env={})


def test_env_overrides_yaml(tmp_path):
    p = write(tmp_path, "host: 0.0.0.0\nport: 6000\nlog_level: DEBUG\nauth:\n  service: fromyaml\n")
    env = {
        "BERTH_HOST": "10.0.0.1",
        "BERTH_PORT": "7000",
        "BERTH_DATA": "/var/lib/berth",
        "BERTH_DATABASE_URL": "postgresql+asyncpg://u:p@db/berth",
        "BERTH_LOG_LEVEL": "WARNING",
        "BERTH_AUTH_SERVICE": "fromenv",
        "BERTH_AUTH_REALM": "https://r.example/auth/token",
        "BERTH_ADMIN_PASSWORD": "s3cret",
    }
    cfg = Config.load(p, env=env)
    assert cfg.host == "10.0.0.1"
    assert cfg.port == 7000
    assert cfg.data_dir == Path("/var/lib/berth")
    assert cfg.database_url == "postgresql+asyncpg://u:p@db/berth"
    assert cfg.log_level == "WARNING"
    assert cfg.auth.service == "fromenv"
    assert cfg.auth.realm == "https://r.example/auth/token"
    assert cfg.auth.admin_password == "s3cret"


@pytest.mark.parametrize("value,expected", [("false", False), ("0", False), ("no", False), ("true", True),
                                            ("1", True), ("ON", True)])
def test_env_auth_enabled(tmp_path, value, expected):
    p = write(tmp_path, f"auth:\n  enabled: {str(not expected).lower()}\n")
    assert Config.load(p, env={"BERTH_AUTH_ENABLED": value}).auth.enabled is expected


def test_empty_env_value_ignored(tmp_path):
    cfg = Config.load(write(tmp_path, "port: 6000\n"), env={"BERTH_PORT": ""})
    assert cfg.port == 6000


def test_flags_override_env():
    cfg = Config.load(None, env={"BERTH_PORT": "7000", "BERTH_HOST": "h"}, port=8000, host=None, data_dir="/x")
    assert cfg.port == 8000
    assert cfg.host == "h"  # a flag left unset (None) does not override
    assert cfg.data_dir == Path("/x")


def test_process_environment_used_by_default(monkeypatch):
    monkeypatch.setenv("BERTH_PORT", "5555")
    assert Config.load().port == 5555
