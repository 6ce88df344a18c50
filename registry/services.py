"""What the handlers work with, created once per application (see registry.app)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from storage.blobs import BlobStore
from storage.catalog import Catalog
from storage.db import Database
from storage.paths import Layout

from .config import Config


@dataclass
class Services:
    config: Config
    layout: Layout
    db: Database
    blobs: BlobStore
    catalog: Catalog
    auth: Any = None  # registry.auth service when auth is enabled


SERVICES = web.AppKey("services", Services)
