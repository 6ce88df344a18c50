"""Every error code Berth answers with, declared once: code, HTTP status, message.

Responses carry the distribution-spec body ``{"errors": [{"code", "message", "detail"}]}``.
Domain exceptions (``storage.errors``, raised by services and stores) are mapped to a code
and a status in one table, ``DOMAIN_ERRORS``; an exception may carry response ``headers``
(an out-of-order chunk's ``Range``, ``Location``, ``Docker-Upload-UUID``).
"""
from __future__ import annotations

import json
from dataclasses import dataclass

from aiohttp import web

from storage import errors as storage_errors
from storage import principals as storage_principals


@dataclass(frozen=True)
class ErrorCode:
    code: str
    status: int
    message: str


def _codes(*items: ErrorCode) -> dict[str, ErrorCode]:
    return {c.code: c for c in items}


CODES = _codes(
    ErrorCode("BLOB_UNKNOWN", 404, "blob unknown to registry"),
    ErrorCode("BLOB_UPLOAD_INVALID", 400, "blob upload invalid"),
    ErrorCode("BLOB_UPLOAD_UNKNOWN", 404, "blob upload unknown to registry"),
    ErrorCode("DIGEST_INVALID", 400, "provided digest did not match uploaded content"),
    ErrorCode("MANIFEST_BLOB_UNKNOWN", 400, "manifest references a manifest or blob unknown to registry"),
    ErrorCode("MANIFEST_INVALID", 400, "manifest invalid"),
    ErrorCode("MANIFEST_UNKNOWN", 404, "manifest unknown to registry"),
    ErrorCode("NAME_INVALID", 400, "invalid repository name"),
    ErrorCode("NAME_UNKNOWN", 404, "repository name not known to registry"),
    ErrorCode("SIZE_INVALID", 400, "provided length did not match content length"),
    ErrorCode("TAG_INVALID", 400, "invalid tag"),  # Distribution's code for a malformed tag
    ErrorCode("PAGINATION_NUMBER_INVALID", 400, "invalid number of results requested"),  # Distribution's
    ErrorCode("UNAUTHORIZED", 401, "authentication required"),
    ErrorCode("DENIED", 403, "requested access to the resource is denied"),
    ErrorCode("UNSUPPORTED", 405, "the operation is unsupported"),
    ErrorCode("TOOMANYREQUESTS", 429, "too many requests"),
    ErrorCode("INVALID_REQUEST", 400, "the request body or parameters are invalid"),  # admin API
    ErrorCode("NOT_FOUND", 404, "no such endpoint"),
    ErrorCode("UNKNOWN", 500, "unknown error"),
)

# Every domain error (storage.errors), mapped once: class -> (OCI code, HTTP status). Looked up
# along the class's MRO, so a subclass without an entry answers like its parent.
DOMAIN_ERRORS: dict[type, tuple[str, int]] = {
    storage_errors.DigestInvalid: ("DIGEST_INVALID", 400),
    storage_errors.BlobUnknown: ("BLOB_UNKNOWN", 404),
    storage_errors.ContentMissing: ("BLOB_UNKNOWN", 404),
    # refused deletions: the spec's status for "deletion not allowed" is 405 UNSUPPORTED,
    # which clients and the conformance suite accept in either teardown order
    storage_errors.BlobInUse: ("UNSUPPORTED", 405),
    storage_errors.ManifestInUse: ("UNSUPPORTED", 405),
    storage_errors.BlobDeleting: ("BLOB_UPLOAD_INVALID", 409),
    storage_errors.UploadUnknown: ("BLOB_UPLOAD_UNKNOWN", 404),
    storage_errors.UploadOutOfOrder: ("BLOB_UPLOAD_INVALID", 416),  # distribution-spec: out-of-order chunk
    storage_errors.SizeInvalid: ("SIZE_INVALID", 400),
    storage_errors.BlobTooLarge: ("SIZE_INVALID", 413),
    storage_errors.NameUnknown: ("NAME_UNKNOWN", 404),
    storage_errors.ManifestUnknown: ("MANIFEST_UNKNOWN", 404),
    storage_errors.ManifestInvalid: ("MANIFEST_INVALID", 400),
    storage_errors.ManifestBlobUnknown: ("MANIFEST_BLOB_UNKNOWN", 400),
    storage_errors.Unsupported: ("UNSUPPORTED", 415),  # e.g. a schema 1 manifest
    storage_errors.DriverUnavailable: ("UNKNOWN", 503),
    storage_errors.QuotaExceeded: ("DENIED", 403),  # the tenant's quota_bytes (docs/operations.md)
    storage_errors.TooManyUploads: ("TOOMANYREQUESTS", 429),  # + Retry-After
    storage_principals.Conflict: ("DENIED", 409),  # tenant, user or robot already exists
}


def domain_code(exc: storage_errors.StorageError) -> tuple[str, int]:
    """(OCI code, HTTP status) of a domain error: the table above, else the class's own ``code``."""
    for klass in type(exc).__mro__:
        if klass in DOMAIN_ERRORS:
            return DOMAIN_ERRORS[klass]
        if klass is storage_errors.StorageError:
            break
    code = getattr(exc, "code", "UNKNOWN")
    return code, CODES.get(code, CODES["UNKNOWN"]).status


class APIError(Exception):
    """Raise from a handler to answer with one OCI error."""

    def __init__(
        self,
        code: str,
        message: str | None = None,
        detail: object | None = None,
        *,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        spec = CODES[code]
        super().__init__(message or spec.message)
        self.code = code
        self.message = message or spec.message
        self.detail = detail
        self.status = status or spec.status
        self.headers = headers or {}


def from_storage(exc: storage_errors.StorageError) -> APIError:
    code, status = domain_code(exc)
    return APIError(code, exc.message, exc.detail, status=status, headers=getattr(exc, "headers", None))


def error_response(err: APIError) -> web.Response:
    body = json.dumps({"errors": [{"code": err.code, "message": err.message, "detail": err.detail}]}).encode()
    return web.Response(
        status=err.status,
        body=body,
        content_type="application/json",
        headers=err.headers,
    )
