"""Every error code Berth answers with, declared once: code, HTTP status, message.

Responses carry the distribution-spec body ``{"errors": [{"code", "message", "detail"}]}``.
Storage-layer exceptions (``storage.errors``) name their code; the statuses that
differ from the code's default are listed in ``_STATUS_OVERRIDES``.
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

_STATUS_OVERRIDES: dict[type, int] = {
    storage_errors.UploadOutOfOrder: 416,  # distribution-spec: out-of-order chunk
    # refused deletions: the spec's status for "deletion not allowed" is 405 UNSUPPORTED,
    # which clients and the conformance suite accept in either teardown order
    storage_errors.BlobInUse: 405,
    storage_errors.ManifestInUse: 405,
    storage_errors.Unsupported: 415,
    storage_principals.Conflict: 409,  # tenant, user or robot already exists
}


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
    status = _STATUS_OVERRIDES.get(type(exc))
    headers = {}
    if isinstance(exc, storage_errors.UploadOutOfOrder):
        headers["Range"] = f"0-{max(exc.offset - 1, 0)}"
    return APIError(exc.code, exc.message, exc.detail, status=status, headers=headers)


def error_response(err: APIError) -> web.Response:
    body = json.dumps({"errors": [{"code": err.code, "message": err.message, "detail": err.detail}]}).encode()
    return web.Response(
        status=err.status,
        body=body,
        content_type="application/json",
        headers=err.headers,
    )
