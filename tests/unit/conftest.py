"""Fixtures shared by the unit tests of the stores (catalog, content driver, gc, fsck)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from storage import db
from storage.catalog import Catalog
from storage.content.filesystem import FilesystemDriver
from storage.paths import Layout


@dataclass
class Store:
    catalog: Catalog
    driver: FilesystemDriver
    layout: Layout
    database: db.Database


@pytest.fixture
async def store(tmp_path, database_url):
    """A data directory with its schema: the catalog on the test's database (SQLite under the
    data directory, or PostgreSQL), the filesystem driver, the layout."""
    layout = Layout(tmp_path / "data")
    layout.create()
    database = db.Database(database_url or db.default_url(layout))
    await database.create_schema()
    yield Store(Catalog(database), FilesystemDriver(layout.root), layout, database)
    await database.dispose()
