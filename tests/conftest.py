"""Shared fixtures: an app with auth off (API tests), the metadata database, helpers to push content.

Tests that take ``database_url`` (through ``config``: tests/api, tests/auth, tests/admin,
tests/unit/test_gc.py, …) run once per database in ``BERTH_TEST_DATABASES`` (default
``sqlite,postgres``), ids ``[sqlite]`` / ``[postgres]``, marker ``postgres``. PostgreSQL is
a throwaway cluster this session starts itself (tests/postgres.py); without PostgreSQL
installed those tests skip, or fail under CI (tests/ci.py: any CI value but false/0/no).
"""
from __future__ import annotations

import asyncio
import atexit
import hashlib
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

from registry.app import create_app
from registry.config import Config
from storage.db import Database

from .seaweed import seaweedfs  # noqa: F401, I001  (the session's SeaweedFS S3 gateway)
from . import postgres as pg
from .ci import in_ci, skip_or_fail

DATABASES = pg.DATABASES
if not set(DATABASES) <= {"sqlite", "postgres"} or not DATABASES:
    raise pytest.UsageError(f"BERTH_TEST_DATABASES={os.environ['BERTH_TEST_DATABASES']!r}: use sqlite, postgres or both")
DATABASE_PARAMS = [pytest.param(d, marks=pytest.mark.postgres) if d == "postgres" else d for d in DATABASES]


def _mode_line() -> str:
    ci = os.environ.get("CI", "")
    if in_ci():
        mode = f"CI (CI={ci!r}): a missing client, PostgreSQL or program fails its test"
    else:
        mode = f"not CI ({'CI=' + repr(ci) if ci else 'CI unset'}): a missing client, PostgreSQL or program skips its test"
    return f"berth: {mode}; databases: {', '.join(DATABASES)}"


def pytest_report_header(config):
    return [_mode_line()]


def pytest_terminal_summary(terminalreporter):
    """Say under the summary (also with -q, which hides the header) how missing programs were treated."""
    terminalreporter.write_line(_mode_line())


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@pytest.fixture(scope="session")
def s3_bucket(seaweedfs) -> str:
    """The one bucket of the session's SeaweedFS; each test works under a key prefix of its own
    (``storage.s3.prefix``). One bucket, not one per test: a SeaweedFS sized by the free disk
    finds volumes for one collection (bucket) only, and a second bucket's writes fail."""
    seaweedfs.create_bucket("berth-content")
    return "berth-content"


@pytest.fixture(scope="session")
def postgres_cluster():
    """A PostgreSQL cluster for this session (started on first use, deleted at the end)."""
    reason = pg.missing_reason()
    if reason is not None:
        skip_or_fail(reason)
    cluster = pg.PostgresCluster()
    atexit.register(cluster.stop)  # should the session end without its teardown
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    yield cluster
    cluster.stop()


def _database(request):
    """None (SQLite under the data directory) or the URL of a fresh PostgreSQL database (schema, no rows)."""
    if request.param == "sqlite":
        yield None
        return
    with request.getfixturevalue("postgres_cluster").database() as url:
        yield url


@pytest.fixture(params=DATABASE_PARAMS)
def database_url(request) -> str | None:
    """The metadata database of one test: None (SQLite, the default) or a postgresql+asyncpg:// URL."""
    yield from _database(request)


@pytest.fixture(scope="module", params=DATABASE_PARAMS)
def module_database_url(request) -> str | None:
    """``database_url`` for a whole module (the conformance workflows)."""
    yield from _database(request)


@pytest.fixture(scope="session", params=DATABASE_PARAMS)
def session_database_url(request) -> str | None:
    yield from _database(request)


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory) -> Path:
    """A SQLite database file with Berth's schema (no rows), made once for the session by
    ``Database.create_schema`` as a start-up on an empty data directory makes it: copied into
    each SQLite test's data directory (``data_dir``), as PostgreSQL tests get a copy of a template
    database (tests/postgres.py), instead of every app start running ``create_all`` (~0.1 s).
    Schema creation itself is proven by tests/unit/test_migrations.py, test_database.py and
    every real ``berth serve`` on a fresh directory (tests/e2e, process, chaos, fuzz)."""
    path = tmp_path_factory.mktemp("sqlite-template") / "berth.db"

    async def create() -> None:
        database = Database(f"sqlite:///{path}")
        try:
            await database.create_schema()
        finally:
            await database.dispose()

    worker = threading.Thread(target=asyncio.run, args=(create(),))  # whatever loop a caller runs
    worker.start()
    worker.join()
    assert path.exists() and not path.with_name(path.name + "-wal").exists()  # checkpointed on close
    return path


def data_dir(tmp_path: Path, database_url: str | None, template: Path) -> Path:
    """``tmp_path/data`` for an app's ``Config``: on SQLite already holding the schema (a copy of
    ``sqlite_template``), on PostgreSQL empty (its database is a copy of the template already)."""
    data = tmp_path / "data"
    if database_url is None:
        data.mkdir(mode=0o700, exist_ok=True)
        shutil.copyfile(template, data / "berth.db")
    return data


@pytest.fixture
def config(tmp_path, database_url, sqlite_template) -> Config:
    cfg = Config(data_dir=data_dir(tmp_path, database_url, sqlite_template), database_url=database_url)
    cfg.auth.enabled = False
    return cfg


@pytest.fixture
async def client(aiohttp_client, config):
    """An aiohttp test client against Berth with auth disabled."""
    return await aiohttp_client(create_app(config))


async def push_blob(client, name: str, data: bytes) -> str:
    digest = sha256(data)
    r = await client.post(f"/v2/{name}/blobs/uploads/?digest={digest}", data=data,
                          headers={"Content-Type": "application/octet-stream"})
    assert r.status == 201, await r.text()
    return digest


async def push_image(client, name: str, tag: str | None = "latest", layers: int = 1, extra: dict | None = None):
    """Push a small OCI image; return (manifest_digest, manifest_bytes, config_digest, layer_digests)."""
    config_bytes = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    config_digest = await push_blob(client, name, config_bytes)
    layer_digests = []
    layer_descs = []
    for i in range(layers):
        data = f"layer {i} of {name} {tag}".encode() * 10
        d = await push_blob(client, name, data)
        layer_digests.append(d)
        layer_descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d, "size": len(data)})
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config_bytes)},
        "layers": layer_descs,
    }
    manifest.update(extra or {})
    body = json.dumps(manifest).encode()
    digest = sha256(body)
    r = await client.put(f"/v2/{name}/manifests/{tag or digest}", data=body,
                         headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert r.status == 201, await r.text()
    return digest, body, config_digest, layer_digests


# headers that belong to one response, not to the representation
_PER_RESPONSE = frozenset({"date", "server", "connection", "keep-alive", "transfer-encoding", "x-request-id"})


def representation_headers(r) -> dict[str, str]:
    """Every header of a response but the per-response ones (Date, Server, …), keys lower-case:
    what GET and HEAD of one resource must agree on."""
    return {k.lower(): v for k, v in r.headers.items() if k.lower() not in _PER_RESPONSE}


async def error_code(r) -> str:
    """The first OCI error code of an error response (asserts the distribution-spec body shape)."""
    body = await r.json(content_type=None)
    assert isinstance(body.get("errors"), list) and body["errors"], body
    return body["errors"][0]["code"]
