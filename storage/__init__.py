"""Berth storage: content-addressed blobs on the filesystem and metadata in SQL.

Nothing in this package imports aiohttp or knows about HTTP. It speaks bytes,
digests and rows; the HTTP layer (``registry``) translates its exceptions
(``storage.errors``) into OCI error responses.
"""
