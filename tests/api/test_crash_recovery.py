"""What a request killed midway leaves, and the next request on the same state (found by the
SIGKILL chaos test, tests/chaos): runs on both databases."""
from __future__ import annotations

from sqlalchemy import select

from registry.services import SERVICES
from storage.models import Blob
from tests.conftest import sha256


async def test_put_retried_after_a_kill_between_commit_and_link(client):
    """The PUT of a chunked session committed the content (the upload became the blob) and the
    process died before the link. The session's row still says every byte is in; the client's
    retry of the PUT must link the placed content (201), not answer 404 BLOB_UPLOAD_UNKNOWN."""
    svc = client.server.app[SERVICES]
    data = b"a layer whose PUT was cut short by SIGKILL" * 100
    digest = sha256(data)
    r = await client.post("/v2/lib/app/blobs/uploads/")
    loc = r.headers["Location"]
    upload_id = r.headers["Docker-Upload-UUID"]
    r = await client.patch(loc, data=data, headers={"Content-Range": f"0-{len(data) - 1}"})
    assert r.status == 202
    # what the killed PUT did: pin, then commit; no link, the row stays
    record = await svc.catalog.get_upload(upload_id, "lib/app")
    assert await svc.catalog.pin_blob(digest, len(data))
    await svc.driver.commit(upload_id, record.driver_state, len(data), digest)

    r = await client.get(loc)
    assert r.status == 204 and r.headers["Range"] == f"0-{len(data) - 1}"
    r = await client.put(f"{loc}&digest={digest}" if "?" in loc else f"{loc}?digest={digest}")
    assert r.status == 201, await r.text()
    r = await client.get(f"/v2/lib/app/blobs/{digest}")
    assert r.status == 200 and await r.read() == data
    assert await svc.catalog.upload_ids() == set()


async def test_put_with_a_wrong_digest_after_such_a_kill_still_fails(client):
    """The recovery links only content stored under the very digest of the PUT, of the row's size."""
    svc = client.server.app[SERVICES]
    data = b"content"
    r = await client.post("/v2/lib/app/blobs/uploads/")
    loc, upload_id = r.headers["Location"], r.headers["Docker-Upload-UUID"]
    assert (await client.patch(loc, data=data, headers={"Content-Range": f"0-{len(data) - 1}"})).status == 202
    record = await svc.catalog.get_upload(upload_id, "lib/app")
    await svc.driver.commit(upload_id, record.driver_state, len(data), sha256(data))
    other = sha256(b"other")
    r = await client.put(f"{loc}&digest={other}" if "?" in loc else f"{loc}?digest={other}")
    assert r.status == 400  # DIGEST_INVALID: the hash state says what was received
    assert (await client.get(f"/v2/lib/app/blobs/{other}")).status == 404


async def test_a_put_carrying_the_whole_blob_pins_before_it_places(client, monkeypatch):
    """POST then PUT with the body (a small blob): the claim's transaction pins the row and the
    body is written and placed in one step; the row is pinned (GC safety, issue 9) before the
    content is placed. A PUT killed after the placing is retried like any other."""
    svc = client.server.app[SERVICES]
    data = b"a small layer, whole in its PUT"
    digest = sha256(data)
    seen = []
    real_commit = svc.driver.commit

    async def commit(upload_id, state, size, d, data=None):
        rows = await svc.catalog.db.read(lambda c: c.execute(select(Blob.size).where(Blob.digest == d)).all())
        seen.append((rows, data))
        return await real_commit(upload_id, state, size, d, data=data)

    monkeypatch.setattr(svc.driver, "commit", commit)
    for _ in range(2):  # the second time the content is stored already (deduplicated)
        r = await client.post("/v2/lib/app/blobs/uploads/")
        loc = r.headers["Location"]
        r = await client.put(f"{loc}?digest={digest}", data=data, headers={"Content-Type": "application/octet-stream"})
        assert r.status == 201, await r.text()
        rows, placed = seen[-1]
        assert len(rows) == 1 and rows[0][0] == len(data)  # pinned before the commit
        assert placed == data  # written and placed in one step
    assert await svc.catalog.blob_size("lib/app", digest) == len(data)
    assert await svc.catalog.upload_ids() == set()
    r = await client.get(f"/v2/lib/app/blobs/{digest}")
    assert r.status == 200 and await r.read() == data
