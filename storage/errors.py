"""Domain errors raised by the storage layer.

Each class names the OCI error code it corresponds to (``code``) so that the HTTP
layer can map it without a lookup table of its own; no HTTP status lives here.
"""
from __future__ import annotations


class StorageError(Exception):
    code = "UNKNOWN"

    def __init__(self, message: str = "", detail: object | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.code)
        self.message = message or (self.__class__.__doc__ or self.code).strip()
        self.detail = detail


class DigestInvalid(StorageError):
    """provided digest did not match uploaded content"""
    code = "DIGEST_INVALID"


class UnsupportedDigest(StorageError):
    """digest algorithm is not supported"""
    code = "DIGEST_INVALID"


class BlobUnknown(StorageError):
    """blob unknown to registry"""
    code = "BLOB_UNKNOWN"


class BlobInUse(StorageError):
    """blob is referenced by a manifest in this repository"""
    code = "UNSUPPORTED"  # the spec's answer to a refused blob deletion


class UploadUnknown(StorageError):
    """blob upload unknown to registry"""
    code = "BLOB_UPLOAD_UNKNOWN"


class UploadOutOfOrder(StorageError):
    """chunk does not start at the current end of the upload"""
    code = "BLOB_UPLOAD_INVALID"

    def __init__(self, offset: int, message: str = "") -> None:
        super().__init__(message or f"chunk must start at offset {offset}", {"offset": offset})
        self.offset = offset


class SizeInvalid(StorageError):
    """provided length did not match content length"""
    code = "SIZE_INVALID"


class NameUnknown(StorageError):
    """repository name not known to registry"""
    code = "NAME_UNKNOWN"


class ManifestUnknown(StorageError):
    """manifest unknown to registry"""
    code = "MANIFEST_UNKNOWN"


class ManifestInvalid(StorageError):
    """manifest invalid"""
    code = "MANIFEST_INVALID"


class ManifestBlobUnknown(StorageError):
    """manifest references a manifest or blob unknown to this repository"""
    code = "MANIFEST_BLOB_UNKNOWN"


class ManifestInUse(StorageError):
    """manifest is referenced by an image index in this repository"""
    code = "UNSUPPORTED"  # the spec's answer to a refused manifest deletion


class Unsupported(StorageError):
    """the operation is unsupported"""
    code = "UNSUPPORTED"


class ContentMissing(StorageError):
    """the blob's content is missing from the content store"""
    code = "BLOB_UNKNOWN"


class DriverUnavailable(StorageError):
    """the content store cannot be used (unreachable, missing bucket, wrong credentials)"""
    code = "UNKNOWN"
