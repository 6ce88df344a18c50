"""After a fuzz run: is the store consistent? (What ``berth fsck`` would flag.)

* every repository link has a live blob row whose content the driver holds, of that size,
  hashing to its digest;
* every manifest's bytes hash to its digest and have its size;
* every blob a manifest references is linked in its repository, every child manifest is a
  manifest of that repository.
"""
from __future__ import annotations

import asyncio
import hashlib

from sqlalchemy import text

from storage import db as dbmod
from storage.content import open_driver
from storage.paths import Layout


def _rows(conn):
    q = lambda sql: conn.execute(text(sql)).all()  # noqa: E731
    return {
        "links": q("SELECT r.name, rb.digest, b.size, b.deleting_at FROM repository_blobs rb "
                   "JOIN repositories r ON r.id = rb.repository_id LEFT JOIN blobs b ON b.digest = rb.digest"),
        "manifests": q("SELECT r.name, m.id, m.digest, m.size, m.content FROM manifests m JOIN repositories r ON r.id = m.repository_id"),
        "blob_refs": q("SELECT r.name, m.digest, mr.digest FROM manifest_references mr JOIN manifests m ON m.id = mr.manifest_id "
                       "JOIN repositories r ON r.id = m.repository_id WHERE mr.kind = 'blob' AND NOT EXISTS ("
                       "SELECT 1 FROM repository_blobs rb WHERE rb.repository_id = m.repository_id AND rb.digest = mr.digest)"),
        "child_refs": q("SELECT r.name, m.digest, mr.digest FROM manifest_references mr JOIN manifests m ON m.id = mr.manifest_id "
                        "JOIN repositories r ON r.id = m.repository_id WHERE mr.kind = 'manifest' AND NOT EXISTS ("
                        "SELECT 1 FROM manifests c WHERE c.repository_id = m.repository_id AND c.digest = mr.digest)"),
        "uploads": q('SELECT id, "offset" FROM uploads'),
    }


async def _check(config) -> tuple[list[str], dict[str, int]]:
    from registry.config import Config  # noqa: F401 - the caller's config

    layout = Layout(config.data_dir)
    database = dbmod.Database(config.database_url or dbmod.default_url(layout))
    driver = open_driver(config.storage, config.data_dir)
    problems: list[str] = []
    try:
        rows = await database.read(_rows)
        for repo, digest, size, deleting in rows["links"]:
            if size is None:
                problems.append(f"{repo}: link to {digest} without a blob row")
                continue
            if deleting is not None:
                problems.append(f"{repo}: link to {digest}, whose blob row is marked for deletion")
            stored = await driver.stat(digest)
            if stored != size:
                problems.append(f"{repo}: {digest} recorded with {size} bytes, the driver holds {stored}")
                continue
            algorithm, _ = digest.split(":", 1)
            h = hashlib.new(algorithm)
            async for chunk in driver.read(digest, 0, size):
                h.update(chunk)
            if f"{algorithm}:{h.hexdigest()}" != digest:
                problems.append(f"{repo}: the content stored for {digest} hashes to {algorithm}:{h.hexdigest()}")
        for repo, _id, digest, size, content in rows["manifests"]:
            content = bytes(content)
            if "sha256:" + hashlib.sha256(content).hexdigest() != digest and not digest.startswith("sha512:"):
                problems.append(f"{repo}: manifest {digest} stored with other bytes")
            if len(content) != size:
                problems.append(f"{repo}: manifest {digest} recorded with size {size}, holds {len(content)} bytes")
        for repo, manifest, digest in rows["blob_refs"]:
            problems.append(f"{repo}: manifest {manifest} references blob {digest}, not linked in the repository")
        for repo, manifest, digest in rows["child_refs"]:
            problems.append(f"{repo}: index {manifest} references manifest {digest}, not in the repository")
        counts = {k: len(v) for k, v in rows.items()}
        return problems, counts
    finally:
        await driver.close()
        await database.dispose()


def check_store(config) -> tuple[list[str], dict[str, int]]:
    """(problems, row counts) of the store ``config`` names (run while the server is stopped or idle)."""
    return asyncio.run(_check(config))
