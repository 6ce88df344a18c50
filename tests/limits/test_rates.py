"""Rate limits per principal and per tenant (token buckets per process), and their defaults."""
from __future__ import annotations

from pathlib import Path

import pytest

from registry.app import create_app
from registry.config import Config, LimitsConfig
from registry.limits import LIMITERS, Buckets, Limiters

from .conftest import ADMIN, basic, err

# ---- the buckets ----------------------------------------------------------------------------------


def test_bucket_burst_then_rate():
    b = Buckets(rate=2, burst=3)
    for _ in range(3):
        assert b.wait("k", 0.0) == 0
        b.take("k", 0.0)
    assert b.wait("k", 0.0) == pytest.approx(0.5)  # one token refills in 1/rate s
    assert b.wait("k", 0.25) == pytest.approx(0.25)
    assert b.wait("k", 0.5) == 0
    assert b.wait("other", 0.0) == 0  # keys are independent
    assert b.wait("k", 1000.0) == 0 and b._level("k", 1000.0) == 3  # never above the burst


def test_full_buckets_are_dropped_when_there_are_too_many():
    b = Buckets(rate=1, burst=2, max_keys=10)
    for i in range(10):
        b.take(f"k{i}", 0.0)
    b.take("fresh", 100.0)  # the 11th key: the others have refilled and go
    assert list(b._buckets) == ["fresh"]


def test_a_refused_request_takes_nothing():
    cfg = LimitsConfig(rate_per_principal=1, burst_per_principal=2, rate_per_tenant=1, burst_per_tenant=3)
    lim = Limiters(cfg, clock=lambda: 0.0)
    assert lim.admit("a", "acme") == (0, None)
    assert lim.admit("a", "acme") == (0, None)
    assert lim.admit("a", "acme") == (1.0, "principal")  # the tenant's third token is left
    assert lim.admit("b", "acme") == (0, None)
    assert lim.admit("c", "acme")[1] == "tenant"  # ... and c's own bucket untouched:
    assert lim.principals.wait("c", 0.0) == 0 and lim.admit("c", "globex") == (0, None)


# Defaults: a fleet of 500 nodes pulling one image through one pull Secret (one robot) in the
# same instant, so no bucket refills at all. Per node, with the robot's token (the token request
# itself goes to /auth/token, which these limits do not count):
#   HEAD manifest by tag + GET index + GET platform manifest + GET config + one GET per layer
NODES = 500
LAYERS = 30
PER_NODE = 4 + LAYERS


def test_defaults_never_limit_a_500_node_fleet_pulling_one_image():
    lim = Limiters(LimitsConfig(), clock=lambda: 0.0)  # the clock never moves: no refill
    refused = [lim.admit("acme+k8s-prod-1a2b3c", "acme") for _ in range(NODES * PER_NODE)]
    assert refused.count((0, None)) == NODES * PER_NODE == 17_000
    # the same fleet pulling through two Secrets at once still fits the tenant's bucket
    assert all(lim.admit("acme+k8s-prod-2", "acme") == (0, None) for _ in range(NODES * PER_NODE))


def test_defaults_do_limit_a_flood():
    """... and are not infinite: one principal past its burst, at one instant, is refused."""
    cfg = LimitsConfig()
    lim = Limiters(cfg, clock=lambda: 0.0)
    for _ in range(cfg.burst_per_principal):
        assert lim.admit("acme+ci", "acme") == (0, None)
    assert lim.admit("acme+ci", "acme")[1] == "principal"


# ---- over HTTP ------------------------------------------------------------------------------------


@pytest.fixture
def config(config):
    config.limits = LimitsConfig(rate_per_principal=1, burst_per_principal=3, rate_per_tenant=1, burst_per_tenant=5)
    return config


@pytest.fixture
def clock(client):
    """The app's limiters on a clock that moves only when a test says so."""
    now = [1000.0]
    client.app[LIMITERS].clock = lambda: now[0]
    return now


@pytest.fixture
async def robots(world, principals):
    out = {}
    for tenant, name in (("acme", "ci"), ("acme", "cd"), ("globex", "ci")):
        robot, secret = await principals.create_robot(tenant, name, ["pull", "push"])
        out[robot.username] = basic(robot.username, secret)
    return out


async def pull(client, headers, name="acme/app"):
    return await client.get(f"/v2/{name}/tags/list", headers=headers)


async def test_principal_past_its_burst_gets_429_and_retry_after(client, robots, clock):
    for _ in range(3):
        assert (await pull(client, robots["acme+ci"])).status == 404  # NAME_UNKNOWN: the request counted
    r = await pull(client, robots["acme+ci"])
    e = await err(r, 429, "TOOMANYREQUESTS")
    assert r.headers["Retry-After"] == "1" and e["detail"] == {"limit": "principal"}
    clock[0] += 1.0  # one token back
    assert (await pull(client, robots["acme+ci"])).status == 404
    await err(await pull(client, robots["acme+ci"]), 429, "TOOMANYREQUESTS")


async def test_the_tenant_bucket_is_shared_by_its_principals(client, robots, clock):
    for _ in range(3):
        assert (await pull(client, robots["acme+ci"])).status == 404
    for _ in range(2):
        assert (await pull(client, robots["acme+cd"])).status == 404
    e = await err(await pull(client, robots["acme+cd"]), 429, "TOOMANYREQUESTS")
    assert e["detail"] == {"limit": "tenant"}
    # another tenant is not affected
    assert (await pull(client, robots["globex+ci"], "globex/app")).status == 404


async def test_requests_the_guard_refuses_are_not_counted(client, robots, clock):
    for _ in range(5):
        assert (await pull(client, {})).status == 401
    for _ in range(3):
        assert (await pull(client, robots["acme+ci"])).status == 404


async def test_only_v2_is_rate_limited(client, robots, clock):
    for _ in range(10):
        assert (await client.get("/healthz")).status == 200
        assert (await client.get("/admin/tenants", headers=ADMIN)).status == 200


async def test_zero_rates_turn_the_limits_off(aiohttp_client, config, robots):
    config.limits = LimitsConfig(rate_per_principal=0, rate_per_tenant=0)
    other = await aiohttp_client(create_app(config))
    other.app[LIMITERS].clock = lambda: 0.0
    for _ in range(50):
        assert (await pull(other, robots["acme+ci"])).status == 404


async def test_without_auth_the_client_address_is_the_principal(aiohttp_client, tmp_path: Path, database_url):
    cfg = Config(data_dir=tmp_path / "open", database_url=database_url)
    cfg.auth.enabled = False
    cfg.limits = LimitsConfig(rate_per_principal=1, burst_per_principal=2, rate_per_tenant=0)
    c = await aiohttp_client(create_app(cfg))
    c.app[LIMITERS].clock = lambda: 0.0
    for name in ("a/x", "b/y"):
        assert (await c.get(f"/v2/{name}/tags/list")).status == 404
    # X-Forwarded-For is not believed (no trusted proxies): the same address, the same bucket
    r = await c.get("/v2/c/z/tags/list", headers={"X-Forwarded-For": "203.0.113.9"})
    await err(r, 429, "TOOMANYREQUESTS")


async def test_the_app_counts_each_pull_request_once_against_the_defaults(aiohttp_client, config, robots):
    """The middleware runs the default buckets and takes one token per request: what the fleet
    test above relies on (a node's pull = PER_NODE requests)."""
    config.limits = LimitsConfig()
    other = await aiohttp_client(create_app(config))
    lim = other.app[LIMITERS]
    lim.clock = lambda: 0.0
    for _ in range(3 * PER_NODE):
        assert (await pull(other, robots["acme+ci"])).status == 404
    assert lim.principals._level("acme+ci", 0.0) == LimitsConfig().burst_per_principal - 3 * PER_NODE
    assert lim.tenants._level("acme", 0.0) == LimitsConfig().burst_per_tenant - 3 * PER_NODE
