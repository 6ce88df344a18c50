"""Fixtures for auth tests: Berth with token auth ON, principals created through storage directly."""
from __future__ import annotations

import base64

import bcrypt
import pytest

from registry.app import create_app
from registry.config import Config
from registry.services import SERVICES
from tests.conftest import data_dir

ADMIN_PASSWORD = "admin-password-for-tests"


def basic(username: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()}


def from_address(address: str) -> dict[str, str]:
    """Headers making the request come from ``address`` (the test client is a trusted proxy)."""
    return {"X-Forwarded-For": address}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture(autouse=True)
def fast_bcrypt(monkeypatch):
    """bcrypt at its minimum cost: the tests create many principals."""
    real = bcrypt.gensalt
    monkeypatch.setattr(bcrypt, "gensalt", lambda rounds=4, prefix=b"2b": real(4, prefix))


@pytest.fixture
def config(tmp_path, database_url, sqlite_template) -> Config:
    cfg = Config(data_dir=data_dir(tmp_path, database_url, sqlite_template), database_url=database_url)
    cfg.auth.enabled = True
    cfg.auth.admin_password = ADMIN_PASSWORD
    cfg.auth.max_failed_logins = 5  # per (username, address)
    cfg.auth.failed_login_window = 300
    cfg.auth.max_failed_logins_per_username = 12  # all addresses together
    cfg.auth.max_failed_logins_per_address = 12  # all usernames together
    cfg.auth.trusted_proxies = ["127.0.0.1/32", "::1/128"]  # tests pick their client address with X-Forwarded-For
    return cfg


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


@pytest.fixture
def auth(client):
    return client.app[SERVICES].auth


@pytest.fixture
def principals(auth):
    return auth.principals


async def get_token(client, *scopes: str, creds: tuple[str, str] | None = None, **params) -> dict:
    query = [("service", "berth")] + [("scope", s) for s in scopes] + list(params.items())
    r = await client.get("/auth/token", params=query, headers=basic(*creds) if creds else {})
    assert r.status == 200, await r.text()
    return await r.json()


@pytest.fixture
async def world(principals):
    """Two tenants (acme, globex), a public tenant (pub), users and robots.

    Returns a dict of credentials by role.
    """
    await principals.create_tenant("acme")
    await principals.create_tenant("globex")
    await principals.create_tenant("pub", public=True)
    for user in ("alice", "bob", "carol", "dave"):
        await principals.create_user(user, f"{user}-password")
    await principals.set_membership("acme", "alice", "owner")
    await principals.set_membership("acme", "bob", "reader")
    await principals.set_membership("acme", "carol", "writer")
    await principals.set_membership("globex", "dave", "owner")
    robot, secret = await principals.create_robot("acme", "ci", ["pull", "push"])
    puller, psecret = await principals.create_robot("acme", "kubelet", ["pull"], repositories=["app", "team/*"])
    return {
        "admin": ("admin", ADMIN_PASSWORD),
        "alice": ("alice", "alice-password"),
        "bob": ("bob", "bob-password"),
        "carol": ("carol", "carol-password"),
        "dave": ("dave", "dave-password"),
        "robot": (robot.username, secret),
        "puller": (puller.username, psecret),
    }


class As:
    """A test client that sends ``headers`` (credentials) with every request (for push_image etc.)."""

    def __init__(self, client, headers: dict[str, str]) -> None:
        self._client = client
        self._headers = headers

    def __getattr__(self, name):
        method = getattr(self._client, name)
        if name not in ("get", "head", "post", "put", "patch", "delete", "request"):
            return method

        def call(*args, **kwargs):
            kwargs["headers"] = {**self._headers, **(kwargs.get("headers") or {})}
            return method(*args, **kwargs)

        return call


async def challenge_of(r) -> dict[str, str]:
    """The parameters of a 401's Bearer challenge."""
    import re

    header = r.headers.get("WWW-Authenticate", "")
    assert header.startswith("Bearer "), header
    return dict(re.findall(r'(\w+)="([^"]*)"', header))
