"""The configuration rules every setting follows, derived from registry.config's dataclasses (so a
setting another branch adds is checked too): one BERTH_* variable each, listed in config/berth.yaml,
typed, validated with one message per problem; berth exits 2 on a bad setting before anything starts."""
from __future__ import annotations

import os

import typing
from pathlib import Path

import pytest
import yaml

from registry import cli
from registry.config import Config, ConfigError, _get, leaves, sources

DOCUMENTED = Path(__file__).resolve().parents[2] / "config" / "berth.yaml"


def flatten(data: dict, prefix: tuple = ()) -> set[str]:
    out = set()
    for k, v in data.items():
        if isinstance(v, dict):
            out |= flatten(v, (*prefix, k))
        else:
            out.add(".".join((*prefix, k)))
    return out


def test_every_setting_is_in_the_documented_file_with_its_default():
    documented = flatten(yaml.safe_load(DOCUMENTED.read_text()))
    assert documented == {leaf.key for leaf in leaves()}
    assert Config.load(DOCUMENTED, env={}) == Config()
    text = DOCUMENTED.read_text()
    for leaf in leaves():  # the naming rule is the file's header; aliases are named on their line
        for alias in leaf.aliases:
            assert alias in text, alias


def sample(tp):
    """(text for the environment, expected value) for a type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType")):
        return sample(next(a for a in typing.get_args(tp) if a is not type(None)))
    if origin is list:
        return "a,b", ["a", "b"]
    if origin is typing.Literal:
        return str(typing.get_args(tp)[0]), typing.get_args(tp)[0]
    assert tp in (bool, int, float, str, Path), f"a setting of type {tp}: teach registry.config._coerce and this test"
    return {bool: ("true", True), int: ("7", 7), float: ("2.5", 2.5), str: ("x", "x"), Path: ("/p", Path("/p"))}[tp]


def test_every_setting_has_its_own_variable(monkeypatch):
    """Each setting, given as its BERTH_* variable (and as <VAR>_FILE), arrives typed (the value
    checks are switched off here: they are tested below)."""
    import registry.config as config_module

    names = [leaf.env for leaf in leaves()] + [a for leaf in leaves() for a in leaf.aliases]
    assert len(names) == len(set(names)), "two settings share a variable"
    monkeypatch.setattr(config_module, "_check", lambda leaf, value: None)
    monkeypatch.setattr(Config, "validate", lambda self: None)
    for section in {leaf.path[0] for leaf in leaves() if len(leaf.path) > 1}:
        monkeypatch.setattr(type(getattr(Config(), section)), "validate", lambda self: None, raising=False)
    for leaf in leaves():
        text, value = sample(leaf.type)
        for env in ({leaf.env: text}, *({alias: text} for alias in leaf.aliases)):
            cfg = Config.load(None, env=env)
            assert _get(cfg, leaf.path) == value, (leaf.key, env)
            assert sources(cfg)[leaf.key] == f"env {next(iter(env))}"


@pytest.mark.parametrize("var, key, value", [
    ("BERTH_AUTH_TOKEN_TTL", "auth.token_ttl", 77),
    ("BERTH_STORAGE_S3_BUCKET", "storage.s3.bucket", "b"),
    ("BERTH_AUTH_VERIFICATION_KEYS", "auth.verification_keys", None),
    ("BERTH_DATA_DIR", "data_dir", Path("/srv/b")),
    ("BERTH_DATA", "data_dir", Path("/srv/b")),
    ("BERTH_MAX_MANIFEST_SIZE", "max_manifest_size", 99),
    ("BERTH_UPLOAD_EXPIRY", "upload_expiry", 5),
    ("BERTH_DATABASE_AUTO_MIGRATE", "database.auto_migrate", False),
    ("BERTH_AUTH_ALGORITHM", "auth.algorithm", "RS256"),
    ("BERTH_AUTH_TRUSTED_PROXIES", "auth.trusted_proxies", ["10.0.0.0/8", "::1"]),
])
def test_environment_by_the_naming_rule(var, key, value):
    text = {77: "77", "b": "b", Path("/srv/b"): "/srv/b", 99: "99", 5: "5", False: "off", "RS256": "rs256",
            None: "", ("10.0.0.0/8", "::1"): ""}.get(value if not isinstance(value, list) else None, "")
    if isinstance(value, list):
        text = ",".join(value)
    if value is None:
        return  # verification_keys needs existing files: covered in test_file_checks
    cfg = Config.load(None, env={var: text})
    assert _get(cfg, tuple(key.split("."))) == value
    assert sources(cfg)[key] == f"env {var}"


def test_secret_from_a_mounted_file(tmp_path):
    (tmp_path / "pw").write_text("s3cret\n")
    (tmp_path / "sk").write_text("SK")
    cfg = Config.load(None, env={"BERTH_AUTH_ADMIN_PASSWORD_FILE": str(tmp_path / "pw"),
                                 "BERTH_STORAGE_S3_SECRET_KEY_FILE": str(tmp_path / "sk")})
    assert cfg.auth.admin_password == "s3cret" and cfg.storage.s3.secret_key == "SK"
    assert sources(cfg)["auth.admin_password"].startswith("env BERTH_AUTH_ADMIN_PASSWORD_FILE")
    assert Config.load(None, env={"BERTH_ADMIN_PASSWORD_FILE": str(tmp_path / "pw")}).auth.admin_password == "s3cret"
    with pytest.raises(ConfigError, match="BERTH_AUTH_ADMIN_PASSWORD_FILE = .*cannot read"):
        Config.load(None, env={"BERTH_AUTH_ADMIN_PASSWORD_FILE": str(tmp_path / "nope")})
    with pytest.raises(ConfigError, match="both set"):
        Config.load(None, env={"BERTH_AUTH_ADMIN_PASSWORD_FILE": str(tmp_path / "pw"), "BERTH_AUTH_ADMIN_PASSWORD": "x"})


def test_canonical_name_wins_over_the_alias():
    cfg = Config.load(None, env={"BERTH_DATA": "/a", "BERTH_DATA_DIR": "/b"})
    assert cfg.data_dir == Path("/b")


@pytest.mark.parametrize("yaml_text, env, message", [
    ("port: not-a-number\n", {}, r"port = 'not-a-number' \(file .*must be an integer"),
    ("port: 0\n", {}, r"port = 0 \(file .*must be between 1 and 65535"),
    ("", {"BERTH_PORT": "70000"}, r"port = 70000 \(env BERTH_PORT\): must be between 1 and 65535"),
    ("auth:\n  token_tll: 300\n", {}, r"unknown configuration key 'auth.token_tll' \(did you mean 'token_ttl'\?\)"),
    ("auth:\n  token_ttl: 0\n", {}, "auth.token_ttl = 0 .*at least 1"),
    ("auth:\n  algorithm: HS256\n", {}, "auth.algorithm = 'HS256'.*ES256, RS256"),
    ("log_level: loud\n", {}, "log_level = 'loud'"),
    ("storage:\n  driver: gcs\n", {}, "storage.driver = 'gcs'"),
    ("database_url: mysql://x/y\n", {}, "database_url = 'mysql://x/y'"),
    ("", {"BERTH_DATABASE_URL": "postgresql://u:pw@h/d"}, r"database_url = 'postgresql://u:\*\*\*@h/d'.*asyncpg"),
    ("auth:\n  realm: ftp://x\n", {}, "auth.realm = 'ftp://x'"),
    ("tls_cert: /nonexistent.pem\n", {}, "tls_cert = '/nonexistent.pem'.*no such file"),
    ("auth:\n  signing_key: /nonexistent.pem\n", {}, "auth.signing_key.*no such file"),
    ("auth:\n  trusted_proxies: [10.0.0.0/33]\n", {}, "auth.trusted_proxies"),
    ("access_log: maybe\n", {}, "access_log = 'maybe'.*true or false"),
    ("", {"BERTH_AUTH_ENABLED": "maybe"}, "auth.enabled = 'maybe' \\(env BERTH_AUTH_ENABLED\\)"),
    ("workers: 0\n", {}, "workers = 0"),
    ("max_blob_size: -1\n", {}, "max_blob_size = -1"),
    ("auth: 5\n", {}, "auth .*must be a mapping"),
    ("port: [1]\n", {}, "port = \\[1\\]"),
    ("host: ''\n", {}, "host = ''.*empty"),
    ("auth:\n  admin_password: [1, 2]\n", {}, r"auth.admin_password = '\*\*\*'"),
    ("tls_cert: " + __file__ + "\n", {}, "tls_cert and tls_key go together"),
])
def test_bad_values_are_named(tmp_path, yaml_text, env, message):
    p = tmp_path / "berth.yaml"
    p.write_text(yaml_text)
    with pytest.raises(ConfigError, match=message) as e:
        Config.load(p, env=env)
    assert len(e.value.problems) == 1, e.value.problems


def test_every_problem_at_once(tmp_path):
    p = tmp_path / "b.yaml"
    p.write_text("port: x\nlog_level: y\nauth:\n  token_tll: 1\n")
    with pytest.raises(ConfigError) as e:
        Config.load(p, env={"BERTH_WORKERS": "z"})
    assert len(e.value.problems) == 4


def test_choices_are_case_insensitive_and_normalised():
    cfg = Config.load(None, env={"BERTH_LOG_LEVEL": "debug", "BERTH_AUTH_ALGORITHM": "rs256"})
    assert (cfg.log_level, cfg.auth.algorithm) == ("DEBUG", "RS256")


def test_sources():
    cfg = Config.load(DOCUMENTED, env={"BERTH_PORT": "6000"}, host="0.0.0.0")
    src = sources(cfg)
    assert src["port"] == "env BERTH_PORT" and src["host"] == "flag --host"
    assert src["auth.token_ttl"] == f"file {DOCUMENTED}"
    assert sources(Config.load(None, env={}))["port"] == "default"


# ---- the command line ----------------------------------------------------------------------


def test_bad_setting_exits_2_before_anything_starts(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.yaml").write_text("port: not-a-number\nauth: {token_tll: 300}\n")
    assert cli.main(["serve", "--config", "b.yaml", "--data", str(tmp_path / "d")]) == 2
    err = capsys.readouterr()
    assert err.out == ""
    assert err.err.splitlines() == [
        "berth: configuration: unknown configuration key 'auth.token_tll' (did you mean 'token_ttl'?) (file b.yaml)",
        "berth: configuration: port = 'not-a-number' (file b.yaml): must be an integer"]
    assert not (tmp_path / "d").exists()
    for cmd in (["gc"], ["tenant", "list"], ["keys", "list"], ["db", "upgrade"], ["config", "show"]):
        assert cli.main([*cmd, "--config", "b.yaml", "--data", str(tmp_path / "d")]) == 2, cmd
        assert "Traceback" not in capsys.readouterr().err
    assert not (tmp_path / "d").exists()


def test_an_unusable_admin_password_is_one_line_and_exit_2(tmp_path):
    """BERTH_ADMIN_PASSWORD shorter than a password may be: one configuration line, no traceback."""
    import subprocess
    import sys

    env = {**os.environ, "BERTH_ADMIN_PASSWORD": "x", "BERTH_DATABASE_URL": ""}
    from tests.e2e.conftest import free_port

    p = subprocess.run([sys.executable, "-m", "registry.cli", "serve", "--data", str(tmp_path / "d"),
                        "--port", str(free_port())],
                       env=env, capture_output=True, text=True, timeout=60)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "Traceback" not in p.stderr
    assert ("berth: configuration: auth.admin_password: cannot create the bootstrap admin user: "
            "password must have at least 8 characters") in p.stderr.splitlines()


def test_config_show_masks_secrets_and_names_sources(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("BERTH_STORAGE_S3_SECRET_KEY", "very-secret")
    monkeypatch.setenv("BERTH_AUTH_ADMIN_PASSWORD", "admin-secret")
    monkeypatch.setenv("BERTH_DATABASE_URL", "postgresql+asyncpg://u:db-secret@h/berth")
    (tmp_path / "b.yaml").write_text("auth:\n  token_ttl: 60\n")
    assert cli.main(["config", "show", "--config", str(tmp_path / "b.yaml"), "--data", "/srv/x"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out and "admin-secret" not in out and "db-secret" not in out
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines()}
    assert lines["storage.s3.secret_key"] == ["***", "env", "BERTH_STORAGE_S3_SECRET_KEY"]
    assert lines["auth.token_ttl"] == ["60", "file", str(tmp_path / "b.yaml")]
    assert lines["data_dir"] == ["/srv/x", "flag", "--data"]
    assert lines["port"] == ["5000", "default"]
    assert lines["database_url"][0] == "postgresql+asyncpg://u:***@h/berth"
    assert set(lines) == {leaf.key for leaf in leaves()}
    assert cli.main(["config", "show", "-o", "yaml"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["storage"]["s3"]["secret_key"] == "***" and shown["auth"]["admin_password"] == "***"


def test_version_and_help(capsys):
    from importlib.metadata import version

    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"berth {version('berth')}"
    with pytest.raises(SystemExit) as e:
        cli.main(["--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    parser = cli.build_parser()
    commands = next(a for a in parser._actions if a.dest == "command").choices
    for name in commands:
        assert name in help_text, name
    assert "exit codes: 0" in help_text
    ops = (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()
    for name in commands:  # every command is documented with the exit codes
        assert f"`berth {name}" in ops, name


@pytest.mark.parametrize("cmd", [["db", "upgrade"], ["db", "current"], ["serve", "--prepare"], ["tenant", "list"]])
def test_unreachable_database_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch, cmd):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    monkeypatch.setenv("BERTH_DATABASE_URL", f"postgresql+asyncpg://berth:pw@127.0.0.1:{port}/berth")
    monkeypatch.setenv("BERTH_ADMIN_PASSWORD", "x")
    assert cli.main([*cmd, "--data", str(tmp_path / "d")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"berth: database: cannot use the database postgresql+asyncpg://berth:***@127.0.0.1:{port}/berth")
    assert len(err.splitlines()) == 1 and "pw@" not in err
