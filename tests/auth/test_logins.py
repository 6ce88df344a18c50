"""The failed-login limit (issue 11, findings 1 and 2): shared by replicas, reserved before bcrypt,
keyed per (username, address) with global caps, logins in flight capped, client address from
trusted proxies only."""
from __future__ import annotations

import asyncio
import ipaddress
import time
import types

import pytest
from multidict import CIMultiDict

from registry.app import create_app
from registry.auth import service as service_mod
from registry.auth.credentials import client_address
from registry.config import Config
from registry.services import SERVICES
from tests.conftest import error_code

from .conftest import basic, from_address


async def token_status(client, creds, address: str) -> int:
    r = await client.get("/auth/token", params={"service": "berth"}, headers={**basic(*creds), **from_address(address)})
    if r.status == 429:
        assert await error_code(r) == "TOOMANYREQUESTS"
        assert int(r.headers["Retry-After"]) >= 1
    return r.status


@pytest.fixture
async def replica(aiohttp_client, config, client):
    """A second Berth on the same database (and data directory): another replica."""
    return await aiohttp_client(create_app(config))


# ---- finding 1: parallel logins cannot pass the limit --------------------------------------------


async def test_parallel_wrong_logins_never_pass_the_limit(client, world, config, principals, monkeypatch):
    config.auth.max_logins_in_flight_per_username = 1000  # only the reservation is tested here
    config.auth.max_logins_in_flight_per_address = 1000
    checked = []
    real = principals.verify_user

    async def counting(username, password):
        checked.append(password)
        return await real(username, password)

    monkeypatch.setattr(principals, "verify_user", counting)
    statuses = await asyncio.gather(*(token_status(client, ("bob", f"wrong-{i}"), "10.0.0.9") for i in range(60)))
    assert statuses.count(401) == config.auth.max_failed_logins == 5
    assert statuses.count(429) == 55
    assert len(checked) == 5  # bcrypt ran for the reserved attempts only
    assert await token_status(client, world["bob"], "10.0.0.9") == 429  # even the right password, from there


async def test_logins_in_flight_are_capped_and_identical_ones_share_a_check(client, world, config, principals,
                                                                         monkeypatch):
    config.auth.max_logins_in_flight_per_username = 2
    release = asyncio.Event()
    entered: list[str] = []
    changed = asyncio.Event()
    real = principals.verify_user

    async def blocking(username, password):
        entered.append(password)
        changed.set()
        await release.wait()
        return await real(username, password)

    monkeypatch.setattr(principals, "verify_user", blocking)

    async def until(n: int, task: asyncio.Task | None = None) -> None:
        while len(entered) < n and not (task is not None and task.done()):
            changed.clear()
            waiters = [asyncio.ensure_future(changed.wait())] + ([task] if task is not None else [])
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            waiters[0].cancel()

    first = asyncio.ensure_future(token_status(client, ("bob", "wrong-1"), "10.0.0.1"))
    second = asyncio.ensure_future(token_status(client, ("bob", "wrong-2"), "10.0.0.2"))
    await until(2)
    # the same credentials from the same address join the check in flight: no 429, no second bcrypt
    joined = asyncio.ensure_future(token_status(client, ("bob", "wrong-1"), "10.0.0.1"))
    third = asyncio.ensure_future(token_status(client, ("bob", "wrong-3"), "10.0.0.3"))
    await until(3, third)
    assert third.done() and third.result() == 429  # refused at once, before any bcrypt
    assert entered == ["wrong-1", "wrong-2"]
    release.set()
    assert await asyncio.gather(first, second, joined) == [401, 401, 401]
    assert entered == ["wrong-1", "wrong-2"]
    # nothing stays in flight: the right password goes through afterwards
    assert await token_status(client, world["bob"], "10.0.0.3") == 200


async def test_the_limit_holds_across_replicas(client, replica, world):
    for app in (client, replica, client, replica, client):
        assert await token_status(app, ("bob", "wrong"), "10.0.0.66") == 401
    assert await token_status(replica, ("bob", "wrong"), "10.0.0.66") == 429
    assert await token_status(client, world["bob"], "10.0.0.66") == 429
    # bob himself, elsewhere, is not locked out on either replica
    assert await token_status(replica, world["bob"], "10.0.0.7") == 200
    assert await token_status(client, world["bob"], "10.0.0.8") == 200


async def test_a_success_gives_the_reservation_back(client, replica, world):
    for _ in range(4):
        assert await token_status(client, ("carol", "wrong"), "10.0.0.5") == 401
    assert await token_status(replica, world["carol"], "10.0.0.5") == 200  # forgets the pair's failures
    for _ in range(5):
        assert await token_status(replica, ("carol", "wrong"), "10.0.0.5") == 401
    assert await token_status(client, ("carol", "wrong"), "10.0.0.5") == 429


# ---- finding 2: nobody is locked out by someone else's guesses -----------------------------------


async def test_an_attacker_elsewhere_cannot_lock_out_a_working_robot(client, replica, world, config):
    config.auth.credential_cache_ttl = 0  # every login is checked: the worst case
    robot = world["robot"]
    assert await token_status(client, robot, "10.1.0.1") == 200
    for _ in range(5):
        assert await token_status(client, (robot[0], "guess"), "10.66.0.1") == 401
    assert await token_status(client, (robot[0], "guess"), "10.66.0.1") == 429
    assert await token_status(client, robot, "10.1.0.1") == 200
    # past the per-username cap (12) from several addresses: the robot's known address still works
    for attacker in ("10.66.0.2", "10.66.0.3"):
        for _ in range(5):
            await token_status(replica, (robot[0], "guess"), attacker)
    assert await token_status(client, (robot[0], "guess"), "10.66.0.4") == 429
    assert await token_status(client, robot, "10.1.0.1") == 200
    assert await token_status(replica, robot, "10.1.0.1") == 200


async def test_made_up_usernames_do_not_lock_out_others_behind_the_same_address(client, world):
    for i in range(11):  # below the per-address cap (12), well above the per-pair limit (5)
        assert await token_status(client, (f"nobody{i}", "wrong"), "192.0.2.1") == 401
    assert await token_status(client, world["bob"], "192.0.2.1") == 200
    assert await token_status(client, ("nobody-else", "wrong"), "192.0.2.1") == 401
    assert await token_status(client, ("nobody-more", "wrong"), "192.0.2.1") == 429  # the cap
    assert await token_status(client, world["bob"], "192.0.2.1") == 200  # bob logged in from here: exempt


async def test_a_cache_hit_extends_the_cached_credential_up_to_a_cap(client, world, config, principals, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(service_mod, "time", types.SimpleNamespace(monotonic=lambda: clock[0], time=time.time))
    checked = []
    real = principals.verify_robot

    async def counting(username, secret):
        checked.append(username)
        return await real(username, secret)

    monkeypatch.setattr(principals, "verify_robot", counting)
    ttl = config.auth.credential_cache_ttl
    assert await token_status(client, world["robot"], "10.1.0.1") == 200
    for _ in range(11):  # a robot logging in more often than the TTL keeps its entry (9.9 TTLs)
        clock[0] += ttl * 0.9
        assert await token_status(client, world["robot"], "10.1.0.1") == 200
    assert checked == ["acme+ci"]
    clock[0] += ttl * 0.9  # but no longer than CREDENTIAL_CACHE_MAX_AGE × TTL after bcrypt ran
    assert await token_status(client, world["robot"], "10.1.0.1") == 200
    assert checked == ["acme+ci", "acme+ci"]


# ---- the client address ---------------------------------------------------------------------------


def _request(peer: str, xff: list[str], trusted: list[str]):
    nets = tuple(ipaddress.ip_network(c) for c in trusted)
    app = {SERVICES: types.SimpleNamespace(auth=types.SimpleNamespace(trusted_proxies=nets))}
    return types.SimpleNamespace(remote=peer, headers=CIMultiDict([("X-Forwarded-For", v) for v in xff]), app=app)


@pytest.mark.parametrize("peer,xff,trusted,expected", [
    ("203.0.113.9", ["1.2.3.4"], [], "203.0.113.9"),  # nothing trusted: the header is ignored
    ("203.0.113.9", ["1.2.3.4"], ["10.0.0.0/8"], "203.0.113.9"),  # an untrusted peer's header is ignored
    ("10.0.0.2", ["1.2.3.4"], ["10.0.0.0/8"], "1.2.3.4"),
    ("10.0.0.2", ["6.6.6.6, 1.2.3.4"], ["10.0.0.0/8"], "1.2.3.4"),  # the client's own entries are left of it
    ("10.0.0.2", ["6.6.6.6", "1.2.3.4, 10.0.0.7"], ["10.0.0.0/8"], "1.2.3.4"),  # proxies chained
    ("10.0.0.2", [], ["10.0.0.0/8"], "10.0.0.2"),
    ("10.0.0.2", ["10.0.0.3"], ["10.0.0.0/8"], "10.0.0.3"),  # only proxies: the left-most
    ("::1", ["2001:db8:0:0::1"], ["::1/128"], "2001:db8::1"),
])
def test_client_address_from_trusted_proxies_only(peer, xff, trusted, expected):
    assert client_address(_request(peer, xff, trusted)) == expected


async def test_an_untrusted_peer_cannot_pick_its_address(aiohttp_client, config, world):
    config.auth.trusted_proxies = []
    c = await aiohttp_client(create_app(config))
    for i in range(5):
        assert await token_status(c, ("bob", "wrong"), f"10.9.0.{i}") == 401
    assert await token_status(c, ("bob", "wrong"), "10.9.0.99") == 429


def test_trusted_proxies_from_the_environment():
    cfg = Config.load(env={"BERTH_AUTH_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.1/32,"})
    assert cfg.auth.trusted_proxies == ["10.0.0.0/8", "192.168.1.1/32"]


async def test_counters_are_pruned_once_their_window_has_passed(principals):
    from sqlalchemy import select

    from storage.models import LoginAttempt

    async def keys() -> set[str]:
        return set(await principals.db.read(lambda c: c.execute(select(LoginAttempt.key)).scalars().all()))

    counted, retry = await principals.reserve_login(("p:1", 5), [("u:1", 9), ("a:1", 9)], "ok:1", 300, 3600)
    assert retry is None and counted == ["p:1", "u:1", "a:1"] and await keys() == {"p:1", "u:1", "a:1"}
    await principals.login_succeeded([], "p:2", "ok:2", 300, 3600)  # prunes nothing still current
    assert await keys() == {"p:1", "u:1", "a:1", "ok:2"}
    await principals.login_succeeded([], "p:3", "ok:3", 0, 0)  # every window has passed now
    assert await keys() == {"ok:3"}
