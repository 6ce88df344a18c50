"""Scale-out tests: several Berth instances sharing one database (and, end to end, one S3 bucket).

In-process tests build several apps on one database: ``shared_url`` is the PostgreSQL
database of the test, or one SQLite file outside every instance's data directory.
Process-level tests (``test_workers``, ``test_replicas``) start real ``berth serve``
processes, HAProxy (tests/haproxy.py), PostgreSQL and SeaweedFS.
"""
from __future__ import annotations

import os

import pytest

from registry.app import create_app
from registry.config import Config
from tests.auth.conftest import basic, bearer, fast_bcrypt  # noqa: F401 - fixtures are found by name
from tests.e2e.conftest import (  # noqa: F401 - the real clients, as fixtures
    containerd,
    containers_env,
    e2e_root,
    podman,
    skopeo,
    workdir,
)

ADMIN_PASSWORD = "admin-password-for-tests"


@pytest.fixture
def shared_url(tmp_path, database_url) -> str:
    """One database for every instance of the test (never under an instance's data directory)."""
    return database_url or f"sqlite:///{tmp_path / 'shared.db'}"


@pytest.fixture
def replica_config(tmp_path, shared_url):
    """``replica_config(name)``: the Config of one instance: its own data directory, the shared database."""
    def make(name: str) -> Config:
        cfg = Config(data_dir=tmp_path / name, database_url=shared_url)
        cfg.auth.enabled = True
        cfg.auth.admin_password = ADMIN_PASSWORD
        return cfg
    return make


@pytest.fixture
async def replicas(aiohttp_client, replica_config):
    """Two Berth instances (test clients) on one database, each with its own empty data directory."""
    a = await aiohttp_client(create_app(replica_config("a")))
    b = await aiohttp_client(create_app(replica_config("b")))
    return a, b


ADMIN = basic("admin", ADMIN_PASSWORD)


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    """``item.rep_call``: whether the test itself failed (test_replicas prints the replicas' logs then)."""
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


def skip_or_fail(reason: str) -> None:
    """A missing program: a failure under CI (any value but false/0/no/off), a skip elsewhere."""
    if os.environ.get("CI", "").strip().lower() not in ("", "false", "0", "no", "off"):
        pytest.fail(f"{reason}; CI requires it", pytrace=False)
    pytest.skip(reason)


async def token(client, *scopes: str, headers=None) -> str:
    query = [("service", "berth")] + [("scope", s) for s in scopes]
    r = await client.get("/auth/token", params=query, headers=ADMIN if headers is None else headers)
    assert r.status == 200, await r.text()
    return (await r.json())["token"]


__all__ = ["ADMIN", "bearer", "token"]
