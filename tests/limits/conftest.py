"""Fixtures for quotas and limits: Berth with auth ON (the admin tests' world: tenants acme and
globex, alice owns acme), plus helpers to push and to read what the database holds."""
from __future__ import annotations

from sqlalchemy import func, select

from registry.services import SERVICES
from storage.models import Blob, Manifest, RepositoryBlob, Upload

from tests.admin.conftest import (  # noqa: F401 - fixtures are found by name
    ADMIN,
    ADMIN_PASSWORD,
    ALICE,
    auth,
    auth_config,
    basic,
    bearer,
    client,
    config,
    err,
    fast_bcrypt,
    principals,
    sha256,
    world,
)

def services(client):
    return client.app[SERVICES]


async def count(client, model, *where) -> int:
    q = select(func.count()).select_from(model)
    for w in where:
        q = q.where(w)
    return await services(client).db.read(lambda c: c.execute(q).scalar())


async def links(client, digest: str) -> int:
    return await count(client, RepositoryBlob, RepositoryBlob.digest == digest)


async def blob_rows(client, digest: str) -> int:
    return await count(client, Blob, Blob.digest == digest)


async def uploads(client) -> int:
    return await count(client, Upload)


async def manifests(client) -> int:
    return await count(client, Manifest)


async def push(client, name: str, data: bytes, headers: dict) -> object:
    """A monolithic blob push (POST ?digest=, Content-Length); the response."""
    return await client.post(f"/v2/{name}/blobs/uploads/?digest={sha256(data)}", data=data,
                             headers={**headers, "Content-Type": "application/octet-stream"})


async def set_quota(client, tenant: str, quota: int | None) -> None:
    r = await client.patch(f"/admin/tenants/{tenant}", json={"quota_bytes": quota}, headers=ADMIN)
    assert r.status == 200, await r.text()
    assert (await r.json())["quota_bytes"] == quota


async def usage(client, tenant: str) -> int:
    r = await client.get(f"/admin/tenants/{tenant}", headers=ADMIN)
    assert r.status == 200, await r.text()
    return (await r.json())["usage_bytes"]
