"""No password, secret, token or Authorization header in any log line at any level (issue 8).

A real ``berth serve`` with auth on and ``log_level: DEBUG``: admin calls that create a user, robots
(secrets in the answers), a rotation and an admin-issued token; the realm's token flows (GET with
Basic, POST password grant in the body and in the query string, refresh tokens); wrong passwords;
skopeo pushing and pulling with credentials. Then every secret used or handed out is looked for in
everything the server wrote (stdout and stderr), in clear and in the forms a header carries it.
"""
from __future__ import annotations

import base64
import json
import secrets
import urllib.parse

import pytest

from tests.e2e.conftest import (  # noqa: F401 - fixtures are found by name
    Creds,
    berth_factory,
    containers_env,
    e2e_root,
    lower_tempdir,
    skopeo,
)
from tests.fixtures.images import build_image

pytestmark = pytest.mark.e2e

ADMIN_PASSWORD = "adm-" + secrets.token_hex(12)
USER_PASSWORD = "usr-" + secrets.token_hex(12)
WRONG_PASSWORD = "wrong-" + secrets.token_hex(12)


def _b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


def test_no_secret_in_any_log_line(berth_factory, skopeo, e2e_root):
    server = berth_factory(auth=True, env={"BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD, "BERTH_LOG_LEVEL": "DEBUG"})
    admin = server.admin
    secrets_used: list[str] = [ADMIN_PASSWORD, USER_PASSWORD, WRONG_PASSWORD]

    def api(method, path, body=None, creds=admin, status=200):
        data = json.dumps(body).encode() if body is not None else None
        res = server.request(method, path, headers={"Content-Type": "application/json"} if data else {},
                             body=data, creds=creds)
        assert res.status == status, f"{method} {path} -> {res.status} {res.body[:300]!r}"
        return res.json() if res.body else None

    api("POST", "/admin/tenants", {"name": "acme"}, status=201)
    api("POST", "/admin/users", {"username": "alice", "password": USER_PASSWORD}, status=201)
    api("PUT", "/admin/tenants/acme/members/alice", {"role": "writer"})
    ci = api("POST", "/admin/tenants/acme/robots", {"name": "ci", "actions": ["pull", "push"]}, status=201)
    node = api("POST", "/admin/tenants/acme/robots", {"name": "node", "actions": ["pull"]}, status=201)
    rotated = api("POST", "/admin/tenants/acme/robots/node/rotate")
    issued = api("POST", "/admin/tokens", {"subject": "deployer", "scope": ["repository:acme/app:pull"]}, status=201)
    secrets_used += [ci["secret"], node["secret"], rotated["secret"], issued["token"]]

    # the realm: GET with Basic (+ refresh token), POST password grant in the body and in the query
    q = urllib.parse.urlencode({"service": "berth", "scope": "repository:acme/app:pull", "offline_token": "true"})
    res = server._send("GET", f"/auth/token?{q}", {"Authorization": "Basic " + _b64("alice", USER_PASSWORD)}, None)
    assert res.status == 200
    got = res.json()
    secrets_used += [got["token"], got["refresh_token"]]
    form = urllib.parse.urlencode({"grant_type": "password", "username": "acme+ci", "password": ci["secret"],
                                   "service": "berth", "scope": "repository:acme/app:push,pull",
                                   "access_type": "offline", "client_id": "t"})
    res = server._send("POST", "/auth/token", {"Content-Type": "application/x-www-form-urlencoded"}, form.encode())
    assert res.status == 200
    secrets_used += [res.json()["access_token"], res.json()["refresh_token"]]
    res = server._send("POST", "/auth/token?" + form, {}, b"")  # podman sends the form as a query string
    assert res.status == 200
    secrets_used.append(res.json()["access_token"])
    refresh = urllib.parse.urlencode({"grant_type": "refresh_token", "refresh_token": got["refresh_token"],
                                      "service": "berth", "client_id": "t"})
    res = server._send("POST", "/auth/token", {"Content-Type": "application/x-www-form-urlencoded"}, refresh.encode())
    assert res.status == 200
    secrets_used.append(res.json()["access_token"])
    # refused: a wrong password (token endpoint, /v2/ Basic, admin API), a forged token
    assert server._send("GET", f"/auth/token?{q}", {"Authorization": "Basic " + _b64("alice", WRONG_PASSWORD)},
                        None).status == 401
    assert server._send("GET", "/v2/", {"Authorization": "Basic " + _b64("alice", WRONG_PASSWORD)}, None).status == 401
    assert server._send("GET", "/admin/tenants", {"Authorization": "Basic " + _b64("admin", WRONG_PASSWORD)},
                        None).status == 401
    assert server._send("GET", "/v2/", {"Authorization": "Bearer " + got["token"] + "x"}, None).status == 401
    # a Bearer token on /v2/
    assert server._send("GET", "/v2/", {"Authorization": "Bearer " + secrets_used[-1]}, None).status == 200

    # real clients: push with the robot, pull back with the user
    image = build_image(lower_tempdir("img-", e2e_root), layers=1)
    skopeo.copy(image.source, server.docker("acme/app", "v1"), dest_creds=Creds("acme+ci", ci["secret"]))
    skopeo.copy(server.docker("acme/app", "v1"), f"oci:{lower_tempdir('pull-', e2e_root)}:back",
                src_creds=Creds("alice", USER_PASSWORD))

    server.stop()
    log = server.log()
    lines = log.splitlines()
    access = [json.loads(ln) for ln in lines if ln.startswith("{") and '"berth.access"' in ln]
    assert len(access) > 20, log[-3000:]  # the run was logged, at DEBUG, as JSON
    assert any(a["principal"] == "acme+ci" and a["route"].startswith("/v2/") for a in access)

    forms = set()
    for s in secrets_used:
        forms |= {s, urllib.parse.quote(s, safe=""), urllib.parse.quote_plus(s)}
    for user, pw in (("admin", ADMIN_PASSWORD), ("alice", USER_PASSWORD), ("alice", WRONG_PASSWORD),
                     ("acme+ci", ci["secret"]), ("acme+node", node["secret"])):
        forms.add(_b64(user, pw))
    for form in forms:
        assert form not in log, f"a secret ({form[:6]}…) is in the server log"
    assert "authorization" not in log.lower()
    assert "$2b$" not in log  # no password hash either
