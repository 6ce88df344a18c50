"""What the handlers work with, built once per process by ``registry.bootstrap``."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from storage.catalog import Catalog
from storage.content import ContentDriver
from storage.db import Database
from storage.paths import Layout

from .config import Config
from .service.registry import BlobService, ManifestService, RepositoryService, TagService, UploadService


@dataclass
class Services:
    config: Config
    layout: Layout
    db: Database
    catalog: Catalog  # the metadata store (admin operations use it too)
    driver: ContentDriver  # blob content (storage.content)
    blobs: BlobService
    uploads: UploadService
    manifests: ManifestService
    tags: TagService
    repositories: RepositoryService
    auth: Any = None  # registry.auth service when auth is enabled


SERVICES = web.AppKey("services", Services)
