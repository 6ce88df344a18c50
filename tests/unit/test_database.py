"""storage on each database (SQLite, PostgreSQL): concurrent writers, schema creation, types.

Runs once per database of BERTH_TEST_DATABASES (see tests/conftest.py). On SQLite the
writes of one process are serialised; on PostgreSQL they really run side by side, so
these are the races two pushes of the same image hit there.
"""
from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import func, select

from storage import db
from storage.catalog import Catalog
from storage.digest import of_bytes
from storage.manifests import parse
from storage.models import Blob, Manifest, ManifestReference, Repository, RepositoryBlob, Tag
from tests import postgres as pg

N = 10


@pytest.fixture
def env(store):
    return store.catalog, store.driver, store.database


def image(config: str, layer: str, **extra) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": 5}],
        **extra,
    }).encode()


async def link(catalog, name: str, digest: str, size: int) -> None:
    """As a push does: pin the blob row (its content is placed then), link it."""
    assert await catalog.pin_blob(digest, size)
    await catalog.link_blob(name, digest, size)


async def count(database, model) -> int:
    return await database.read(lambda c: c.execute(select(func.count()).select_from(model)).scalar())


async def test_concurrent_link_of_one_blob(env):
    catalog, _, database = env
    d = of_bytes(b"layer")
    await asyncio.gather(*(link(catalog, "a/new", d, 5) for _ in range(N)))
    assert await catalog.blob_size("a/new", d) == 5
    assert await catalog.repositories() == ["a/new"]
    assert await count(database, RepositoryBlob) == 1


async def test_concurrent_link_of_one_blob_into_many_repositories(env):
    catalog, _, database = env
    d = of_bytes(b"layer")
    await asyncio.gather(*(link(catalog, f"r/{i}", d, 5) for i in range(N)))
    assert await catalog.repositories() == sorted(f"r/{i}" for i in range(N))
    assert await count(database, Blob) == 1
    assert await count(database, RepositoryBlob) == N


async def test_concurrent_puts_of_one_manifest_and_tag(env):
    catalog, _, database = env
    cfg, layer = of_bytes(b"{}"), of_bytes(b"layer")
    await link(catalog, "a/b", cfg, 2)
    await link(catalog, "a/b", layer, 5)
    body = image(cfg, layer)
    digest = of_bytes(body)
    await asyncio.gather(*(catalog.put_manifest("a/b", digest, parse(body, None), body, "latest") for _ in range(N)))
    assert (await catalog.get_manifest("a/b", "latest")).digest == digest
    assert await count(database, Manifest) == 1
    assert await count(database, ManifestReference) == 2
    assert await catalog.tags("a/b") == ["latest"]


async def test_concurrent_tagging_of_stored_manifests(env):
    """The manifests exist already: every PUT goes straight to the tag (a new one), at once."""
    catalog, _, _ = env
    cfg = of_bytes(b"{}")
    await link(catalog, "a/b", cfg, 2)
    bodies = []
    for i in range(N):
        layer = of_bytes(f"layer {i}".encode())
        await link(catalog, "a/b", layer, 5)
        body = image(cfg, layer)
        await catalog.put_manifest("a/b", of_bytes(body), parse(body, None), body, None)
        bodies.append(body)
    same = [catalog.put_manifest("a/b", of_bytes(bodies[0]), parse(bodies[0], None), bodies[0], "same") for _ in range(N)]
    moving = [catalog.put_manifest("a/b", of_bytes(b), parse(b, None), b, "moving") for b in bodies]
    await asyncio.gather(*same, *moving)
    assert (await catalog.get_manifest("a/b", "same")).digest == of_bytes(bodies[0])
    assert (await catalog.get_manifest("a/b", "moving")).digest in {of_bytes(b) for b in bodies}
    assert await catalog.tags("a/b") == ["moving", "same"]


async def test_concurrent_first_pushes_into_a_new_repository(env):
    """Each push creates the repository (ON CONFLICT), links its blobs and tags its manifest."""
    catalog, _, database = env

    async def push(i: int) -> str:
        cfg, layer = of_bytes(b"{}"), of_bytes(f"layer {i}".encode())
        await link(catalog, "fresh/repo", cfg, 2)
        await link(catalog, "fresh/repo", layer, 5)
        body = image(cfg, layer)
        await catalog.put_manifest("fresh/repo", of_bytes(body), parse(body, None), body, "latest")
        await catalog.put_manifest("fresh/repo", of_bytes(body), parse(body, None), body, f"v{i}")
        return of_bytes(body)

    digests = await asyncio.gather(*(push(i) for i in range(N)))
    assert await count(database, Repository) == 1
    assert await count(database, Manifest) == N
    assert await count(database, Tag) == N + 1
    assert (await catalog.get_manifest("fresh/repo", "latest")).digest in digests  # the last commit wins


async def test_gc_and_push_of_one_blob_race(env):
    """A collector marking an unused blob against a push linking it: exactly one wins, and
    a blob is never both linked and marked for deletion."""
    import time

    from sqlalchemy import update

    from storage.errors import BlobDeleting

    catalog, _, database = env
    d = of_bytes(b"layer")
    for _ in range(5):
        await link(catalog, "a/b", d, 5)
        await catalog.unlink_blob("a/b", d)
        await database.write(lambda c: c.execute(update(Blob).values(last_used_at=time.time() - 10)))
        mark = time.time()
        marked, linked = await asyncio.gather(
            catalog.mark_unused_blobs(mark - 5, mark, mark - 900), catalog.link_blob("c/d", d, 5),
            return_exceptions=True,
        )
        if isinstance(linked, BlobDeleting):
            assert marked == [(d, 5)] and await catalog.blob_size("c/d", d) is None
            assert await catalog.forget_blobs([d], mark) == 1
        else:
            assert linked is None and marked == [], (marked, linked)
            assert await catalog.blob_size("c/d", d) == 5
            await catalog.unlink_blob("c/d", d)


async def test_long_values_round_trip(env):
    """PostgreSQL enforces VARCHAR lengths; free-form strings are TEXT, names are bounded by the grammar."""
    catalog, _, _ = env
    cfg, layer = of_bytes(b"{}"), of_bytes(b"layer")
    name = "/".join(["x" * 63] * 4)  # 255 characters, the longest valid name
    tag = "t" * 128
    await link(catalog, name, cfg, 2)
    await link(catalog, name, layer, 5)
    artifact_type = "application/vnd.example." + "a" * 400
    body = image(cfg, layer, artifactType=artifact_type, subject={
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": "sha512:" + "0" * 128, "size": 1},
        annotations={"k" * 300: "v" * 5000})
    digest = of_bytes(body, "sha512")
    await catalog.put_manifest(name, digest, parse(body, None), body, tag)
    got = await catalog.get_manifest(name, tag)
    assert (got.digest, got.content) == (digest, body)  # bytes exactly as pushed
    [ref] = await catalog.referrers(name, "sha512:" + "0" * 128)
    assert ref["artifactType"] == artifact_type
    assert ref["annotations"] == {"k" * 300: "v" * 5000}


async def test_names_sort_by_code_point(env):
    """The catalog and tag lists are in lexical (code point) order whatever the database's locale."""
    catalog, _, _ = env
    d = of_bytes(b"layer")
    names = ["a/b", "a-b", "a.b", "a_b", "ab", "a0", "b"]
    for n in names:
        await link(catalog, n, d, 5)
    assert await catalog.repositories() == sorted(names)
    assert await catalog.repositories(n=3, last="a.b") == sorted(names)[sorted(names).index("a.b") + 1:][:3]


@pytest.mark.postgres
@pytest.mark.skipif("postgres" not in pg.DATABASES, reason="BERTH_TEST_DATABASES leaves PostgreSQL out")
async def test_schema_created_by_instances_starting_together(request):
    """Several Berth instances starting at once on an empty PostgreSQL database."""
    cluster = request.getfixturevalue("postgres_cluster")
    with cluster.empty_database() as url:
        databases = [db.Database(url) for _ in range(4)]
        try:
            await asyncio.gather(*(d.create_schema() for d in databases))
            await databases[0].create_schema()  # and again: nothing to do
            assert await Catalog(databases[0]).repositories() == []
            assert databases[0].dialect == "postgresql"
        finally:
            for d in databases:
                await d.dispose()


async def test_concurrent_setting_of_one_membership(env, monkeypatch):
    """Two admins (or retries) setting the same membership at once: all succeed, one row."""
    import bcrypt

    from storage.models import Membership
    from storage.principals import Principals

    real = bcrypt.gensalt
    monkeypatch.setattr(bcrypt, "gensalt", lambda rounds=4, prefix=b"2b": real(4, prefix))
    _, _, database = env
    principals = Principals(database)
    await principals.create_tenant("acme")
    await principals.create_user("alice", "alice-password")
    roles = ["reader", "writer"] * (N // 2)
    await asyncio.gather(*(principals.set_membership("acme", "alice", r) for r in roles))
    assert await count(database, Membership) == 1
    assert (await principals.members("acme"))["alice"] in ("reader", "writer")
    # no membership change bumps the user's version (issue 11): tokens are re-intersected with the
    # roles of the moment, so a downgrade takes that tenant's actions only, not the user's other tokens
    await principals.set_membership("acme", "alice", "owner")
    before = (await principals.get_user("alice")).version
    await principals.set_membership("acme", "alice", "owner")
    assert (await principals.get_user("alice")).version == before
    await principals.set_membership("acme", "alice", "reader")
    assert (await principals.get_user("alice")).version == before
    assert (await principals.get_user("alice")).roles == {"acme": "reader"}


# ---- more digests than one statement may bind (issue 9, item 3) ---------------------------------
# PostgreSQL binds at most 32,767 parameters per statement: put_manifest cuts its lists into
# batches. tests/api/test_manifests.py does this through HTTP with a 33,000-layer image; an index
# with that many children would exceed the 4 MiB manifest limit, so its path is held here.
MANY = 40_000


def _index(children: list[str]) -> bytes:
    return json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": d, "size": 1}
                      for d in children],
    }).encode()


async def test_index_with_40000_children(env):
    catalog, _, database = env
    children = [of_bytes(f"child {i}".encode()) for i in range(MANY)]
    await link(catalog, "a/big", of_bytes(b"x"), 1)  # the repository

    def insert_children(conn):
        rid = conn.execute(select(Repository.id).where(Repository.name == "a/big")).scalar_one()
        conn.execute(Manifest.__table__.insert(), [
            {"repository_id": rid, "digest": d, "media_type": "application/vnd.oci.image.manifest.v1+json",
             "size": 1, "content": b"{}", "created_at": 0.0} for d in children])

    await database.write(insert_children)
    body = _index(children)
    parsed = parse(body, None)
    assert len(parsed.manifests) == MANY
    await catalog.put_manifest("a/big", of_bytes(body), parsed, body, "all")
    assert (await catalog.get_manifest("a/big", "all")).content == body
    assert await count(database, ManifestReference) == MANY


async def test_index_with_40000_children_missing(env):
    catalog, _, database = env
    from storage.errors import ManifestBlobUnknown

    children = [of_bytes(f"absent {i}".encode()) for i in range(MANY)]
    body = _index(children)
    with pytest.raises(ManifestBlobUnknown) as e:
        await catalog.put_manifest("a/big", of_bytes(body), parse(body, None), body, "all")
    assert e.value.detail == {"missing": children}
    assert await count(database, Manifest) == 0
    assert await count(database, Repository) == 0


async def test_sqlite_threads_keep_their_connection(tmp_path):
    """On SQLite each database thread keeps one connection (and one descriptor of the writer
    lock) between operations; a failed write leaves no transaction behind; dispose() closes
    them and the next operation opens them again."""
    from sqlalchemy import text  # noqa: PLC0415

    database = db.Database(f"sqlite:///{tmp_path / 'kept.db'}")
    await database.create_schema()
    try:
        await database.write(lambda c: c.execute(text("CREATE TABLE t (x INTEGER PRIMARY KEY)")))
        for i in range(3 * db.DB_THREADS):
            await database.write(lambda c, i=i: c.execute(text("INSERT INTO t VALUES (:x)"), {"x": i}))
        assert len(database._kept_all) <= db.DB_THREADS  # one per thread, not one per operation

        def fails(c):
            c.execute(text("INSERT INTO t VALUES (100)"))
            raise RuntimeError("rolled back")

        with pytest.raises(RuntimeError):
            await database.write(fails)
        for _ in range(2 * db.DB_THREADS):  # every thread: no transaction left open, nothing of it kept
            assert await database.read(lambda c: c.execute(text("SELECT count(*) FROM t")).scalar()) == 3 * db.DB_THREADS
            assert await database.write(lambda c: c.connection.dbapi_connection.in_transaction) is False
        await database.dispose()
        database._pool = db.ThreadPoolExecutor(db.DB_THREADS)  # as if started again
        assert await database.read(lambda c: c.execute(text("SELECT count(*) FROM t")).scalar()) == 3 * db.DB_THREADS
        await database.write(lambda c: c.execute(text("INSERT INTO t VALUES (200)")))
    finally:
        await database.dispose()


async def test_direct_statements_run_in_the_transaction(env):
    """execute_direct (SQLite: the DB-API cursor; PostgreSQL: conn.execute) answers as
    SQLAlchemy would, belongs to the write's transaction, and raises SQLAlchemy's errors."""
    from sqlalchemy.exc import IntegrityError  # noqa: PLC0415

    from storage import catalog as catalog_module  # noqa: PLC0415

    catalog, _, database = env
    await catalog.create_upload("a" * 32, "lib/app", b"\x01" * 8, {"k": 1})
    record = await catalog.get_upload("a" * 32, "lib/app")
    assert (record.offset, record.hash_state, record.driver_state) == (0, b"\x01" * 8, {"k": 1})
    assert await database.read(lambda c: db.execute_direct(c, catalog_module._REPO_ID, {"name": "no/such"}).scalar()) is None

    def claim_then_fail(c):
        params = {"p_id": "a" * 32, "p_name": "lib/app", "p_now": 1.0, "p_token": "t" * 32, "p_expires_at": 9e12}
        assert db.execute_direct(c, catalog_module._CLAIM, params).rowcount == 1
        raise RuntimeError("rolled back")

    with pytest.raises(RuntimeError):
        await database.write(claim_then_fail)
    assert await catalog.release_upload("a" * 32, "t" * 32) is None
    row = await database.read(catalog_module._upload_row, "a" * 32)
    assert row.lease_token is None and row.repository == "lib/app"  # the claim was rolled back
    with pytest.raises(IntegrityError):
        await catalog.create_upload("a" * 32, "lib/app", None, {})  # the same id again
    if database.is_sqlite:  # the direct path was taken (not the fallback for a changed SQLAlchemy)
        for stmt in (catalog_module._REPO_ID, catalog_module._CLAIM, catalog_module._UPLOAD_ROW):
            assert db._DIRECT[id(stmt)][1] is not None, stmt
