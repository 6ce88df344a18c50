"""Domain errors raised by the storage layer and the services above it.

Declared here once, each with a default message (its docstring). They know nothing of
HTTP: ``registry.errors`` maps every class to an OCI error code and an HTTP status in one
table (``DOMAIN_ERRORS``), and the CLI prints the same mapping. ``code`` remains only as
the fallback for error classes declared elsewhere (``storage.principals``).
"""
from __future__ import annotations


class StorageError(Exception):
    code = "UNKNOWN"

    def __init__(self, message: str = "", detail: object | None = None) -> None:
        default = (self.__class__.__doc__ or self.code).strip()
        super().__init__(message or default)
        self.message = message or default
        self.detail = detail


class DigestInvalid(StorageError):
    """provided digest did not match uploaded content"""


class UnsupportedDigest(DigestInvalid):
    """digest algorithm is not supported"""


class BlobUnknown(StorageError):
    """blob unknown to registry"""


class BlobInUse(StorageError):
    """blob is referenced by a manifest in this repository"""


class BlobDeleting(StorageError):
    """the blob was removed by garbage collection while it was pushed; push it again"""


class UploadUnknown(StorageError):
    """blob upload unknown to registry"""


class UploadOutOfOrder(StorageError):
    """chunk does not start at the current end of the upload"""

    def __init__(self, offset: int, message: str = "") -> None:
        super().__init__(message or f"chunk must start at offset {offset}", {"offset": offset})
        self.offset = offset


class UploadBusy(UploadOutOfOrder):
    """another request is writing to this upload"""

    def __init__(self, offset: int, holder: str | None = None) -> None:
        super().__init__(offset, f"another request is writing to this upload (at offset {offset}); retry from there")
        self.holder = holder  # the lease token of that request, when known


class SizeInvalid(StorageError):
    """provided length did not match content length"""


class BlobTooLarge(SizeInvalid):
    """blob larger than the configured maximum"""

    def __init__(self, limit: int) -> None:
        super().__init__(f"blob larger than max_blob_size ({limit} bytes)", {"limit": limit})
        self.limit = limit


class NameUnknown(StorageError):
    """repository name not known to registry"""


class ManifestUnknown(StorageError):
    """manifest unknown to registry"""


class ManifestInvalid(StorageError):
    """manifest invalid"""


class ManifestBlobUnknown(StorageError):
    """manifest references a manifest or blob unknown to this repository"""


class ManifestInUse(StorageError):
    """manifest is referenced by an image index in this repository"""


class Unsupported(StorageError):
    """the operation is unsupported"""


class ContentMissing(StorageError):
    """the blob's content is missing from the content store"""


class DriverUnavailable(StorageError):
    """the content store cannot be used (unreachable, missing bucket, wrong credentials)"""


class QuotaExceeded(StorageError):
    """the tenant's storage quota would be exceeded"""

    def __init__(self, tenant: str, quota: int, usage: int, adds: int) -> None:
        super().__init__(
            f"tenant {tenant!r} storage quota exceeded: quota_bytes is {quota}, {usage} bytes are used, "
            f"this push would add {adds}",
            {"tenant": tenant, "quota_bytes": quota, "usage_bytes": usage, "adds_bytes": adds},
        )
        self.tenant, self.quota, self.usage, self.adds = tenant, quota, usage, adds


class TooManyUploads(StorageError):
    """too many upload sessions open at once"""

    def __init__(self, principal: str, limit: int, retry_after: int) -> None:
        super().__init__(
            f"{limit} upload sessions are already open for this client; finish or cancel one "
            f"(DELETE …/blobs/uploads/<id>) or retry later",
            {"limit": limit},
        )
        self.limit = limit
        self.retry_after = max(1, int(retry_after))
        self.headers = {"Retry-After": str(self.retry_after)}
