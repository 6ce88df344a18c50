"""The service layer: one service per resource, between the HTTP handlers and the stores.

Handlers (``registry.api``) parse HTTP and call a service; a service speaks the domain and
coordinates the content driver (``storage.content``) and the metadata catalog
(``storage.catalog``); domain errors (``storage.errors``) go up unchanged and
``registry.errors`` maps them to OCI errors. ``registry.service.registry`` declares what
handlers may ask, as Protocols. docs/architecture.md walks a push and a pull through it.
"""
from .blobs import BlobContent, Blobs
from .manifests import Manifests, PutResult
from .repositories import Repositories
from .tags import Tags
from .uploads import Uploads, UploadStatus

__all__ = ["BlobContent", "Blobs", "Manifests", "PutResult", "Repositories", "Tags", "Uploads", "UploadStatus"]
