"""POST /admin/tenants/{tenant}/pull-secrets: a ready-to-apply kubernetes.io/dockerconfigjson Secret."""
from __future__ import annotations

import base64
import json

import pytest
import yaml

from .conftest import ADMIN, ALICE, basic, err, token_ok

pytestmark = pytest.mark.usefixtures("world")


def dockerconfig(secret: dict) -> dict:
    assert secret["apiVersion"] == "v1" and secret["kind"] == "Secret"
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert list(secret["data"]) == [".dockerconfigjson"]
    return json.loads(base64.b64decode(secret["data"][".dockerconfigjson"]))


async def test_json_secret_decodes_to_a_working_dockerconfigjson(client, auth, principals):
    r = await client.post("/admin/tenants/acme/pull-secrets", json={"namespace": "shop"}, headers=ALICE)
    assert r.status == 201 and r.content_type == "application/json"
    secret = await r.json()
    assert secret["metadata"]["name"] == "berth-acme" and secret["metadata"]["namespace"] == "shop"
    host = f"{client.server.host}:{client.server.port}"
    cfg = dockerconfig(secret)
    assert list(cfg["auths"]) == [f"{host}/acme"]
    entry = cfg["auths"][f"{host}/acme"]
    assert base64.b64decode(entry["auth"]).decode() == f"{entry['username']}:{entry['password']}"
    assert entry["username"].startswith("acme+k8s-shop-") and r.headers["Berth-Robot"] == entry["username"]
    assert secret["metadata"]["annotations"]["berth.io/robot"] == entry["username"]
    # a pull-only robot of acme: pull granted, push and other tenants not
    tok = await token_ok(client, basic(entry["username"], entry["password"]),
                         "repository:acme/app:pull,push", "repository:globex/app:pull")
    _, access = await auth.identity_from_token(tok["token"])
    assert access == [{"type": "repository", "name": "acme/app", "actions": ["pull"]}]
    robots = await principals.list_robots("acme")
    assert [(x.username, x.actions) for x in robots] == [(entry["username"], ("pull",))]
    assert "shop/berth-acme" in robots[0].description


@pytest.mark.parametrize("accept", ["application/yaml", "application/x-yaml", "text/yaml"])
async def test_yaml_secret(client, accept):
    body = {"namespace": "shop", "name": "regcred", "server": "registry.example.com"}
    r = await client.post("/admin/tenants/acme/pull-secrets", json=body, headers={**ALICE, "Accept": accept})
    assert r.status == 201 and r.content_type == "application/yaml"
    secret = yaml.safe_load(await r.text())
    assert secret["metadata"]["name"] == "regcred"
    cfg = dockerconfig(secret)
    assert list(cfg["auths"]) == ["registry.example.com/acme"]


@pytest.mark.parametrize("server,key", [
    ("registry.example.com:5000", "registry.example.com:5000/acme"),
    ("https://registry.example.com/", "registry.example.com/acme"),
    ("[::1]:5000", "[::1]:5000/acme"),
])
async def test_server_override(client, server, key):
    r = await client.post("/admin/tenants/acme/pull-secrets", json={"namespace": "a", "server": server}, headers=ADMIN)
    assert list(dockerconfig(await r.json())["auths"]) == [key]


async def test_two_secrets_get_two_robots(client, principals):
    for ns in ("a", "b"):
        assert (await client.post("/admin/tenants/acme/pull-secrets", json={"namespace": ns}, headers=ALICE)).status == 201
    assert len(await principals.list_robots("acme")) == 2


async def test_named_robot_and_expiry(client, principals):
    body = {"namespace": "shop", "robot": "kubelet", "expires_in": 600}
    r = await client.post("/admin/tenants/acme/pull-secrets", json=body, headers=ALICE)
    assert r.headers["Berth-Robot"] == "acme+kubelet"
    assert (await principals.get_robot("acme+kubelet")).expires_at is not None


@pytest.mark.parametrize("body", [
    {},
    {"namespace": "Not_A_Namespace"},
    {"namespace": "x" * 64},
    {"namespace": "ok", "name": "UPPER"},
    {"namespace": "ok", "server": "host/with/path"},
    {"namespace": "ok", "server": "bad host"},
    {"namespace": "ok", "robot": "Bad Robot"},
    {"namespace": "ok", "kind": "Secret"},
    {"namespace": "shop\n"},  # "$" took a trailing newline: the patterns end in \Z
    {"namespace": "ok", "name": "regcred\n"},
])
async def test_bad_bodies_are_400(client, body):
    r = await client.post("/admin/tenants/acme/pull-secrets", json=body, headers=ALICE)
    assert r.status == 400
    assert (await r.json())["errors"][0]["code"] in ("INVALID_REQUEST", "NAME_INVALID")


async def test_other_tenant_and_unknown_tenant(client):
    await err(await client.post("/admin/tenants/globex/pull-secrets", json={"namespace": "a"}, headers=ALICE),
              403, "DENIED")
    await err(await client.post("/admin/tenants/nope/pull-secrets", json={"namespace": "a"}, headers=ADMIN),
              404, "NAME_UNKNOWN")
