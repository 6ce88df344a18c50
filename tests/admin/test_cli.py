"""The berth CLI admin subcommands: the same operations as the admin API, on a data directory."""
from __future__ import annotations

import asyncio
import base64
import io
import json

import jwt
import pytest
import yaml

from registry.app import create_app
from registry.cli import main
from registry.config import Config

from .conftest import basic, token_ok


@pytest.fixture
def data(tmp_path):
    return str(tmp_path / "data")


@pytest.fixture
def berth(data, capsys):
    """Run ``berth <args> --data <tmp>``; return (exit code, parsed stdout or text, stderr)."""
    def run(*args: str, raw: bool = False):
        capsys.readouterr()
        rc = main([*args, "--data", data])
        out, err = capsys.readouterr()
        if raw or rc != 0:
            return rc, out, err
        return rc, json.loads(out), err
    return run


def test_tenant_create_list_show_delete(berth):
    rc, out, _ = berth("tenant", "create", "acme")
    assert rc == 0 and out["name"] == "acme" and out["public"] is False
    assert berth("tenant", "create", "pub", "--public")[1]["public"] is True
    assert [t["name"] for t in berth("tenant", "list")[1]] == ["acme", "pub"]
    assert berth("tenant", "show", "acme")[1]["repositories"] == 0
    rc, out, _ = berth("tenant", "delete", "pub")
    assert rc == 0 and out["deleted"] == "pub"
    assert [t["name"] for t in berth("tenant", "list")[1]] == ["acme"]


def test_errors_are_json_on_stderr_with_exit_1(berth):
    berth("tenant", "create", "acme")
    rc, out, err = berth("tenant", "create", "acme")
    assert rc == 1 and out == ""
    assert json.loads(err)["errors"][0]["code"] == "DENIED"
    rc, _, err = berth("tenant", "delete", "nope")
    assert rc == 1 and json.loads(err)["errors"][0]["code"] == "NAME_UNKNOWN"
    rc, _, err = berth("tenant", "create", "Bad Name")
    assert rc == 1 and json.loads(err)["errors"][0]["code"] == "NAME_INVALID"


def test_user_create_passwd_list_and_members(berth, monkeypatch):
    berth("tenant", "create", "acme")
    assert berth("user", "create", "alice", "--password", "alice-password")[0] == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("bob-password\n"))
    assert berth("user", "create", "bob", "--password-stdin")[0] == 0
    rc, _, err = berth("user", "create", "carol", "--password", "short")
    assert rc == 1 and json.loads(err)["errors"][0]["code"] == "INVALID_REQUEST"
    assert berth("member", "set", "acme", "alice", "owner")[1] == {"tenant": "acme", "username": "alice", "role": "owner"}
    assert berth("member", "set", "acme", "bob", "reader")[0] == 0
    assert berth("member", "list", "acme")[1] == [{"username": "alice", "role": "owner"},
                                                 {"username": "bob", "role": "reader"}]
    users = {u["username"]: u for u in berth("user", "list")[1]}
    assert users["alice"]["roles"] == {"acme": "owner"} and users["bob"]["roles"] == {"acme": "reader"}
    assert berth("member", "remove", "acme", "bob")[0] == 0
    assert berth("user", "passwd", "alice", "--password", "alice-password-2")[1]["password_changed"] is True
    rc, _, err = berth("user", "passwd", "nobody", "--password", "whatever-pw")
    assert rc == 1


def test_robot_create_list_rotate_delete(berth):
    berth("tenant", "create", "acme")
    rc, robot, _ = berth("robot", "create", "acme", "ci", "--actions", "pull,push", "--repository", "app",
                         "--expires-in", "3600")
    assert rc == 0 and robot["username"] == "acme+ci" and robot["secret"]
    assert robot["actions"] == ["pull", "push"] and robot["repositories"] == ["app"] and robot["expires_at"]
    rc, listed, _ = berth("robot", "list", "acme", raw=True)
    assert robot["secret"] not in listed and '"secret"' not in listed
    rc, rotated, _ = berth("robot", "rotate", "acme", "ci")
    assert rotated["secret"] != robot["secret"]
    assert berth("robot", "delete", "acme", "ci")[1] == {"deleted": "acme+ci"}
    assert berth("robot", "list", "acme")[1] == []
    rc, _, err = berth("robot", "create", "acme", "x", "--actions", "fly")
    assert rc == 1 and json.loads(err)["errors"][0]["code"] == "INVALID_REQUEST"


def test_pull_secret_json_and_yaml(berth):
    berth("tenant", "create", "acme")
    rc, secret, _ = berth("pull-secret", "create", "acme", "--namespace", "shop", "--server", "reg.example.com:5000")
    assert rc == 0 and secret["type"] == "kubernetes.io/dockerconfigjson"
    cfg = json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))
    entry = cfg["auths"]["reg.example.com:5000/acme"]
    assert base64.b64decode(entry["auth"]).decode() == f"{entry['username']}:{entry['password']}"
    rc, text, _ = berth("pull-secret", "create", "acme", "--namespace", "shop", "--server", "reg.example.com",
                        "--name", "regcred", "-o", "yaml", raw=True)
    secret = yaml.safe_load(text)
    assert secret["metadata"] == {**secret["metadata"], "name": "regcred", "namespace": "shop"}
    assert "reg.example.com/acme" in json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))["auths"]
    assert len(berth("robot", "list", "acme")[1]) == 2


def test_token_create_is_capped_and_verifiable(berth, data):
    rc, tok, _ = berth("token", "create", "--subject", "ci", "--scope", "repository:acme/app:pull",
                       "--scope", "registry:catalog:*", "--expires-in", str(10 ** 7))
    assert rc == 0 and tok["expires_in"] == 24 * 3600  # the default auth.max_admin_token_ttl
    claims = jwt.decode(tok["token"], options={"verify_signature": False})
    assert claims["sub"] == "ci" and claims["access"][0] == {"type": "repository", "name": "acme/app",
                                                              "actions": ["pull"]}
    rc, _, err = berth("token", "create", "--subject", "ci", "--scope", "garbage")
    assert rc == 1 and json.loads(err)["errors"][0]["code"] == "INVALID_REQUEST"


def test_audit_records_cli_actions(berth):
    berth("tenant", "create", "acme")
    berth("robot", "create", "acme", "ci")
    evs = berth("audit")[1]
    assert [e["action"] for e in evs] == ["robot.create", "tenant.create"]
    assert all(e["actor"] == "admin" and e["detail"]["via"] == "cli" for e in evs)
    assert [e["action"] for e in berth("audit", "--tenant", "acme", "--limit", "1")[1]] == ["robot.create"]


async def test_cli_and_http_share_the_same_state(aiohttp_client, tmp_path):
    """Principals made with the CLI work against a running Berth on the same data directory,
    and the CLI's tokens are signed with the server's key."""
    data = str(tmp_path / "shared")

    def cli(*args):
        import contextlib
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main([*args, "--data", data]) == 0
        return json.loads(buf.getvalue())

    cfg = Config(data_dir=tmp_path / "shared")
    cfg.auth.admin_password = "admin-password-for-tests"
    client = await aiohttp_client(create_app(cfg))
    await asyncio.to_thread(cli, "tenant", "create", "acme")
    robot = await asyncio.to_thread(cli, "robot", "create", "acme", "ci", "--actions", "pull")
    tok = await token_ok(client, basic(robot["username"], robot["secret"]), "repository:acme/app:pull")
    assert tok["token"]
    svc_tok = await asyncio.to_thread(cli, "token", "create", "--subject", "ci", "--scope", "registry:admin:*")
    r = await client.get("/admin/tenants", headers={"Authorization": f"Bearer {svc_tok['token']}"})
    assert r.status == 200 and [t["name"] for t in (await r.json())["tenants"]] == ["acme"]
