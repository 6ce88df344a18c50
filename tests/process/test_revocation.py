"""Revocation across processes: two ``berth serve`` on one data directory (and one database).

A robot's credentials and tokens work on both; it is deleted through process A's admin API;
A refuses it at once and B within the documented bound (docs/auth.md: principal state is
cached for 5 seconds in each process), for its Basic credentials, a token issued before the
delete, and a new token request.
"""
from __future__ import annotations

import base64
import json
import time
import urllib.parse

import pytest

from tests.conftest import sha256
from tests.e2e.conftest import BerthServer, Creds

from .conftest import database_env

pytestmark = pytest.mark.process

ADMIN_PASSWORD = "process-admin-pw-1"
BOUND = 6.0  # seconds: the 5-second principal cache of docs/auth.md, plus slack for a slow machine
REPO = "acme/app"


def _basic(creds: Creds) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(str(creds).encode()).decode()}


def _admin(server: BerthServer, method: str, path: str, body: dict | None = None):
    data = json.dumps(body).encode() if body is not None else None
    headers = {**_basic(server.admin), "Content-Type": "application/json"} if data is not None else _basic(server.admin)
    return server._send(method, path, headers, data)


def _token(server: BerthServer, creds: Creds, scope: str):
    """GET the realm of ``server`` with Basic credentials; (status, token or None, body)."""
    challenge = server.request("GET", "/v2/", anonymous=True).headers["www-authenticate"]
    service = dict(p.split("=", 1) for p in challenge.split(" ", 1)[1].split(","))["service"].strip('"')
    query = urllib.parse.urlencode({"service": service, "scope": scope})
    res = server._send("GET", f"/auth/token?{query}", _basic(creds), None)
    if res.status != 200:
        return res.status, None, res
    doc = res.json()
    return 200, doc.get("token") or doc["access_token"], res


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _error_code(res) -> str:
    return res.json()["errors"][0]["code"]


def test_robot_revoked_on_a_is_refused_by_b(servers, process_root, database_url):
    data = process_root / "shared-data"
    env = {"BERTH_ADMIN_PASSWORD": ADMIN_PASSWORD, **database_env(database_url)}
    a = servers(data, auth=True, env=env)
    b = servers(data, auth=True, env=env)
    assert a.admin is not None and b.admin is not None

    assert _admin(a, "POST", "/admin/tenants", {"name": "acme"}).status == 201
    res = _admin(a, "POST", "/admin/tenants/acme/robots", {"name": "ci", "actions": ["pull", "push"]})
    assert res.status == 201, res.body
    robot = Creds(res.json()["username"], res.json()["secret"])

    # the robot pushes through A and pulls through B, with its password and with tokens
    blob = b"pushed by a robot through process A"
    digest = sha256(blob)
    res = a.request("POST", f"/v2/{REPO}/blobs/uploads/?digest={digest}", body=blob, creds=robot,
                    headers={"Content-Type": "application/octet-stream"})
    assert res.status == 201, res.body
    res = b.request("GET", f"/v2/{REPO}/blobs/{digest}", creds=robot)
    assert (res.status, res.body) == (200, blob)
    status, token_from_a, _ = _token(a, robot, f"repository:{REPO}:pull")
    assert status == 200
    res = b._send("GET", f"/v2/{REPO}/blobs/{digest}", _bearer(token_from_a), None)
    assert (res.status, res.body) == (200, blob)  # one signing key, shared through the data directory
    status, token_from_b, _ = _token(b, robot, f"repository:{REPO}:pull")
    assert status == 200
    res = b._send("GET", f"/v2/{REPO}/blobs/{digest}", _bearer(token_from_b), None)
    assert res.status == 200

    # revoke through A's admin API
    res = _admin(a, "DELETE", "/admin/tenants/acme/robots/ci")
    assert (res.status, res.json()) == (200, {"deleted": "acme+ci"}), res.body
    revoked_at = time.monotonic()

    # A: at once
    res = a._send("GET", f"/v2/{REPO}/blobs/{digest}", _bearer(token_from_a), None)
    assert (res.status, _error_code(res)) == (401, "UNAUTHORIZED")
    status, _, res = _token(a, robot, f"repository:{REPO}:pull")
    assert (status, _error_code(res)) == (401, "UNAUTHORIZED")

    # B: within the bound, for every form of the robot's credentials
    def b_refuses() -> list[str]:
        still = []
        for label, token in (("token from A", token_from_a), ("token from B", token_from_b)):
            r = b._send("GET", f"/v2/{REPO}/blobs/{digest}", _bearer(token), None)
            if r.status != 401:
                still.append(f"{label}: {r.status}")
            else:
                assert _error_code(r) == "UNAUTHORIZED"
        s, _, r = _token(b, robot, f"repository:{REPO}:pull")
        if s != 401:
            still.append(f"token request: {s}")
        else:
            assert _error_code(r) == "UNAUTHORIZED"
        return still

    while (still := b_refuses()) and time.monotonic() - revoked_at < BOUND:
        time.sleep(0.2)
    assert still == [], f"process B still accepts the deleted robot {time.monotonic() - revoked_at:.1f}s later: {still}"
