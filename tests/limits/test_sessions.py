"""Open upload sessions per principal, counted in the database: past the limit → 429 + Retry-After."""
from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import update

from registry.app import create_app
from storage.errors import TooManyUploads
from storage.models import Upload

from .conftest import ADMIN, basic, err, services, sha256, uploads

pytestmark = pytest.mark.usefixtures("world")

LIMIT = 2


@pytest.fixture
def config(config):
    config.limits.max_upload_sessions_per_principal = LIMIT
    return config


@pytest.fixture
async def robots(principals):
    out = {}
    for name in ("ci", "cd"):
        robot, secret = await principals.create_robot("acme", name, ["pull", "push"])
        out[name] = basic(robot.username, secret)
    return out


async def start(client, headers, name="acme/app"):
    return await client.post(f"/v2/{name}/blobs/uploads/", headers=headers)


async def test_past_the_limit_is_429_with_retry_after_and_nothing_recorded(client, robots):
    for _ in range(LIMIT):
        assert (await start(client, robots["ci"])).status == 202
    r = await start(client, robots["ci"], "acme/other")
    e = await err(r, 429, "TOOMANYREQUESTS")
    assert "upload sessions" in e["message"]
    retry = int(r.headers["Retry-After"])
    expiry = services(client).config.upload_expiry
    assert expiry - 60 <= retry <= expiry  # when the oldest session expires
    assert await uploads(client) == LIMIT
    # no session has a file before its first byte, and the refused one left none either
    assert list((services(client).config.data_dir / "uploads").iterdir()) == []
    # another principal, even of the same tenant, is not affected
    assert (await start(client, robots["cd"])).status == 202


async def test_finishing_or_cancelling_a_session_frees_it(client, robots):
    locs = [(await start(client, robots["ci"])).headers["Location"] for _ in range(LIMIT)]
    await err(await start(client, robots["ci"]), 429, "TOOMANYREQUESTS")
    assert (await client.delete(locs[0], headers=robots["ci"])).status == 204
    assert (await start(client, robots["ci"])).status == 202
    data = b"finished"
    r = await client.put(f"{locs[1]}?digest={sha256(data)}", data=data,
                         headers={**robots["ci"], "Content-Type": "application/octet-stream"})
    assert r.status == 201, await r.text()
    assert (await start(client, robots["ci"])).status == 202


async def test_expired_sessions_do_not_count(client, robots):
    for _ in range(LIMIT):
        assert (await start(client, robots["ci"])).status == 202
    old = time.time() - services(client).config.upload_expiry - 1  # the sweeper has not run yet
    await services(client).db.write(lambda c: c.execute(update(Upload).values(updated_at=old)))
    assert (await start(client, robots["ci"])).status == 202


async def test_monolithic_pushes_and_mounts_open_no_session(client, robots):
    for _ in range(LIMIT):
        assert (await start(client, robots["ci"])).status == 202
    data = b"monolithic"
    r = await client.post(f"/v2/acme/app/blobs/uploads/?digest={sha256(data)}", data=data,
                          headers={**robots["ci"], "Content-Type": "application/octet-stream"})
    assert r.status == 201, await r.text()
    r = await client.post(f"/v2/acme/two/blobs/uploads/?mount={sha256(data)}&from=acme/app", headers=robots["ci"])
    assert r.status == 201


async def test_admin_is_a_principal_like_any_other(client):
    for _ in range(LIMIT):
        assert (await start(client, ADMIN)).status == 202
    await err(await start(client, ADMIN, "globex/x"), 429, "TOOMANYREQUESTS")


async def test_zero_turns_the_limit_off(aiohttp_client, config):
    config.limits.max_upload_sessions_per_principal = 0
    other = await aiohttp_client(create_app(config))  # on the same database as `client`
    for _ in range(LIMIT + 3):
        assert (await start(other, ADMIN)).status == 202


async def test_the_limit_holds_across_replicas(aiohttp_client, client, config, robots):
    """Two processes on one database: the sessions are counted where they are, in the database."""
    other = await aiohttp_client(create_app(config))
    assert (await start(client, robots["ci"])).status == 202
    assert (await start(other, robots["ci"])).status == 202
    await err(await start(client, robots["ci"]), 429, "TOOMANYREQUESTS")
    await err(await start(other, robots["ci"]), 429, "TOOMANYREQUESTS")


async def test_concurrent_opens_cannot_pass_the_limit_together(client):
    catalog = services(client).catalog
    results = await asyncio.gather(
        *(catalog.create_upload(f"{i:032x}", "acme/app", None, {}, principal="acme+ci", max_open=LIMIT)
          for i in range(8)),
        return_exceptions=True,
    )
    assert [type(r).__name__ for r in results].count("NoneType") == LIMIT
    assert all(isinstance(r, TooManyUploads) for r in results if r is not None)
    assert await uploads(client) == LIMIT
