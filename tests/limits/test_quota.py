"""Per-tenant storage quotas: quota_bytes on the admin API, usage_bytes, and pushes past the quota."""
from __future__ import annotations

import asyncio
import json

import pytest

from storage.errors import QuotaExceeded

from .conftest import (
    ADMIN,
    ALICE,
    blob_rows,
    err,
    links,
    manifests,
    push,
    services,
    set_quota,
    sha256,
    uploads,
    usage,
)

pytestmark = pytest.mark.usefixtures("world")

OCTETS = {**ADMIN, "Content-Type": "application/octet-stream"}


async def agen(*parts: bytes):
    for p in parts:
        yield p


def image(config: bytes, *layers: bytes) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha256(config),
                   "size": len(config)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha256(x), "size": len(x)}
                   for x in layers],
    }).encode()


async def put_manifest(client, name: str, tag: str, body: bytes):
    return await client.put(f"/v2/{name}/manifests/{tag}", data=body,
                            headers={**ADMIN, "Content-Type": "application/vnd.oci.image.manifest.v1+json"})


async def stored(client, digest: str) -> bool:
    return await services(client).driver.stat(digest) is not None


# ---- the admin API ---------------------------------------------------------------------------


async def test_quota_set_at_creation_shown_on_get_and_list(client):
    r = await client.post("/admin/tenants", json={"name": "initech", "quota_bytes": 1000}, headers=ADMIN)
    assert r.status == 201, await r.text()
    assert (await r.json())["quota_bytes"] == 1000
    r = await client.get("/admin/tenants/initech", headers=ADMIN)
    body = await r.json()
    assert body["quota_bytes"] == 1000 and body["usage_bytes"] == 0
    r = await client.get("/admin/tenants", headers=ADMIN)
    assert {t["name"]: t["quota_bytes"] for t in (await r.json())["tenants"]} == {
        "acme": None, "globex": None, "initech": 1000}


@pytest.mark.parametrize("bad", [-1, "1000", True, 1.5, 2**63, {"bytes": 1}])
async def test_bad_quotas_are_400_and_change_nothing(client, bad):
    await err(await client.post("/admin/tenants", json={"name": "initech", "quota_bytes": bad}, headers=ADMIN),
              400, "INVALID_REQUEST")
    await err(await client.get("/admin/tenants/initech", headers=ADMIN), 404, "NAME_UNKNOWN")
    await err(await client.patch("/admin/tenants/acme", json={"quota_bytes": bad, "public": True}, headers=ADMIN),
              400, "INVALID_REQUEST")
    body = await (await client.get("/admin/tenants/acme", headers=ADMIN)).json()
    assert body["quota_bytes"] is None and body["public"] is False


async def test_admin_changes_and_removes_the_quota(client):
    await set_quota(client, "acme", 5000)
    assert (await (await client.get("/admin/tenants/acme", headers=ADMIN)).json())["quota_bytes"] == 5000
    await set_quota(client, "acme", None)
    assert (await (await client.get("/admin/tenants/acme", headers=ADMIN)).json())["quota_bytes"] is None


async def test_owner_sees_but_cannot_change_the_quota(client):
    await set_quota(client, "acme", 5000)
    r = await client.patch("/admin/tenants/acme", json={"quota_bytes": 10**12, "public": True}, headers=ALICE)
    await err(r, 403, "DENIED")
    body = await (await client.get("/admin/tenants/acme", headers=ALICE)).json()
    assert body["quota_bytes"] == 5000 and body["usage_bytes"] == 0
    assert body["public"] is False  # all or nothing: the flag did not change either
    r = await client.patch("/admin/tenants/acme", json={"public": True}, headers=ALICE)
    assert r.status == 200 and (await r.json())["public"] is True


async def test_patch_without_changes_is_400(client):
    await err(await client.patch("/admin/tenants/acme", json={}, headers=ADMIN), 400, "INVALID_REQUEST")


# ---- usage ---------------------------------------------------------------------------------------


async def test_usage_counts_each_blob_and_manifest_once_per_tenant(client):
    a, b = b"a" * 100, b"b" * 250
    for name, data in (("acme/one", a), ("acme/two", a), ("acme/team/three", a), ("acme/two", b),
                       ("globex/app", b"g" * 999)):
        assert (await push(client, name, data, ADMIN)).status == 201
    assert await usage(client, "acme") == 350
    manifest = image(a, b)
    assert (await push(client, "acme/one", b, ADMIN)).status == 201
    for name in ("acme/one", "acme/two"):
        assert (await put_manifest(client, name, "v1", manifest)).status == 201
    assert await usage(client, "acme") == 350 + len(manifest)
    assert await usage(client, "globex") == 999


async def test_tenant_names_are_not_patterns(client, principals):
    """`_` is a LIKE wildcard: tenant a_b must not count (or be limited by) aab's repositories."""
    await principals.create_tenant("a_b")
    await principals.create_tenant("aab")
    await set_quota(client, "a_b", 50)
    assert (await push(client, "aab/x", b"x" * 100, ADMIN)).status == 201
    assert (await push(client, "a_b/x", b"y" * 40, ADMIN)).status == 201
    assert await usage(client, "a_b") == 40
    assert await usage(client, "aab") == 100


# ---- pushes past the quota -----------------------------------------------------------------------


async def test_push_past_quota_is_denied_before_anything_is_stored(client):
    await set_quota(client, "acme", 1000)
    assert (await push(client, "acme/app", b"1" * 600, ADMIN)).status == 201
    big = b"2" * 600
    e = await err(await push(client, "acme/app", big, ADMIN), 403, "DENIED")
    assert "1000" in e["message"] and "600 bytes are used" in e["message"]
    assert e["detail"] == {"tenant": "acme", "quota_bytes": 1000, "usage_bytes": 600, "adds_bytes": 600}
    assert await links(client, sha256(big)) == 0
    assert await blob_rows(client, sha256(big)) == 0 and not await stored(client, sha256(big))
    assert await usage(client, "acme") == 600
    # another tenant is not affected
    assert (await push(client, "globex/app", big, ADMIN)).status == 201


async def test_a_push_that_fills_the_quota_exactly_passes(client):
    await set_quota(client, "acme", 1000)
    assert (await push(client, "acme/app", b"1" * 1000, ADMIN)).status == 201
    await err(await push(client, "acme/app", b"2", ADMIN), 403, "DENIED")


async def test_quota_zero_refuses_everything_new(client):
    await set_quota(client, "acme", 0)
    await err(await push(client, "acme/app", b"x", ADMIN), 403, "DENIED")


async def test_content_the_tenant_has_passes_even_over_a_lowered_quota(client):
    data = b"x" * 600
    assert (await push(client, "acme/one", data, ADMIN)).status == 201
    await set_quota(client, "acme", 100)  # below the usage: nothing is deleted
    assert (await push(client, "acme/two", data, ADMIN)).status == 201  # adds nothing
    r = await client.post(f"/v2/acme/three/blobs/uploads/?mount={sha256(data)}&from=acme/one", headers=ADMIN)
    assert r.status == 201, await r.text()
    await err(await push(client, "acme/two", b"new", ADMIN), 403, "DENIED")
    assert await usage(client, "acme") == 600


async def test_streamed_monolithic_push_stops_at_the_quota(client):
    """No Content-Length: the body is cut off as soon as it passes the quota; nothing is kept."""
    await set_quota(client, "acme", 1000)
    data = b"s" * 5000
    r = await client.post(f"/v2/acme/app/blobs/uploads/?digest={sha256(data)}",
                          data=agen(data[:500], data[500:]), headers=OCTETS)
    await err(r, 403, "DENIED")
    assert await blob_rows(client, sha256(data)) == 0 and not await stored(client, sha256(data))
    assert list((services(client).config.data_dir / "uploads").iterdir()) == []


async def test_chunk_past_the_quota_discards_the_session(client):
    await set_quota(client, "acme", 1000)
    r = await client.post("/v2/acme/app/blobs/uploads/", headers=ADMIN)
    loc = r.headers["Location"]
    r = await client.patch(loc, data=b"a" * 600, headers={**OCTETS, "Content-Range": "0-599"})
    assert r.status == 202, await r.text()
    r = await client.patch(loc, data=b"a" * 600, headers={**OCTETS, "Content-Range": "600-1199"})
    await err(r, 403, "DENIED")
    await err(await client.get(loc, headers=ADMIN), 404, "BLOB_UPLOAD_UNKNOWN")
    assert await uploads(client) == 0


async def test_streamed_chunk_past_the_quota_discards_the_session(client):
    await set_quota(client, "acme", 1000)
    loc = (await client.post("/v2/acme/app/blobs/uploads/", headers=ADMIN)).headers["Location"]
    r = await client.patch(loc, data=agen(b"a" * 700, b"a" * 700), headers=OCTETS)
    await err(r, 403, "DENIED")
    await err(await client.get(loc, headers=ADMIN), 404, "BLOB_UPLOAD_UNKNOWN")
    assert await uploads(client) == 0


async def test_put_after_the_quota_was_lowered_keeps_nothing(client):
    data = b"p" * 600
    loc = (await client.post("/v2/acme/app/blobs/uploads/", headers=ADMIN)).headers["Location"]
    assert (await client.patch(loc, data=data, headers=OCTETS)).status == 202
    await set_quota(client, "acme", 500)
    await err(await client.put(f"{loc}?digest={sha256(data)}", headers=ADMIN), 403, "DENIED")
    await err(await client.get(loc, headers=ADMIN), 404, "BLOB_UPLOAD_UNKNOWN")
    assert await uploads(client) == 0 and await links(client, sha256(data)) == 0
    assert not await stored(client, sha256(data))


async def test_mount_past_the_quota_is_denied(client):
    data = b"m" * 600
    assert (await push(client, "globex/src", data, ADMIN)).status == 201
    await set_quota(client, "acme", 500)
    r = await client.post(f"/v2/acme/app/blobs/uploads/?mount={sha256(data)}&from=globex/src", headers=ADMIN)
    await err(r, 403, "DENIED")
    assert await links(client, sha256(data)) == 1  # globex's only
    assert await uploads(client) == 0


async def test_manifest_bytes_count_and_a_manifest_past_the_quota_is_refused(client):
    cfg, layer = b'{"os":"linux"}', b"l" * 300
    manifest = image(cfg, layer)
    await set_quota(client, "acme", len(cfg) + len(layer) + len(manifest) - 1)
    for data in (cfg, layer):
        assert (await push(client, "acme/app", data, ADMIN)).status == 201
    e = await err(await put_manifest(client, "acme/app", "v1", manifest), 403, "DENIED")
    assert e["detail"]["adds_bytes"] == len(manifest)
    assert await manifests(client) == 0
    await set_quota(client, "acme", len(cfg) + len(layer) + len(manifest))
    assert (await put_manifest(client, "acme/app", "v1", manifest)).status == 201
    assert (await put_manifest(client, "acme/app", "v2", manifest)).status == 201  # the same bytes: nothing added
    assert await usage(client, "acme") == len(cfg) + len(layer) + len(manifest)


async def test_concurrent_links_cannot_both_pass_the_check(client):
    """The check that counts runs in the transaction that links (tenant row locked): of two
    blobs that each fit but not together, exactly one is linked."""
    await set_quota(client, "acme", 1000)
    catalog = services(client).catalog
    blobs = [sha256(b"1" * 600), sha256(b"2" * 600)]
    for d in blobs:
        assert await catalog.pin_blob(d, 600)
    results = await asyncio.gather(
        *(catalog.link_blob(f"acme/r{i}", d, 600) for i, d in enumerate(blobs)), return_exceptions=True
    )
    assert sorted(type(r).__name__ for r in results) == ["NoneType", "QuotaExceeded"]
    assert sum([await links(client, d) for d in blobs]) == 1
    assert await catalog.tenant_usage("acme") == 600
    with pytest.raises(QuotaExceeded):
        await catalog.link_blob("acme/r9", blobs[[type(r) for r in results].index(QuotaExceeded)], 600)


async def test_refused_at_the_link_the_session_goes_and_the_content_is_linked_nowhere(client, monkeypatch):
    """When only the final check refuses (the early one saw room: a race, or a quota changed in
    between), the session is discarded too; the placed content is left to garbage collection."""
    import storage.catalog

    # the early check (Catalog.quota_room, and the room read with an upload's claim) sees room
    monkeypatch.setattr(storage.catalog, "_room_for", lambda conn, name, digest: None)
    await set_quota(client, "acme", 500)
    data = b"r" * 600
    loc = (await client.post("/v2/acme/app/blobs/uploads/", headers=ADMIN)).headers["Location"]
    assert (await client.patch(loc, data=data, headers=OCTETS)).status == 202
    await err(await client.put(f"{loc}?digest={sha256(data)}", headers=ADMIN), 403, "DENIED")
    await err(await client.get(loc, headers=ADMIN), 404, "BLOB_UPLOAD_UNKNOWN")
    assert await uploads(client) == 0 and await links(client, sha256(data)) == 0
    assert await usage(client, "acme") == 0
    # a monolithic push the same way
    await err(await push(client, "acme/app", b"q" * 600, ADMIN), 403, "DENIED")
    assert await links(client, sha256(b"q" * 600)) == 0
