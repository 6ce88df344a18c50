"""Digest grammar and hashing (pure functions).

A digest is ``algorithm ":" encoded``. Berth stores and verifies ``sha256`` and
``sha512`` (the two algorithms registered by the OCI image-spec).
"""
from __future__ import annotations

import hashlib
import re

from .errors import DigestInvalid, UnsupportedDigest

# The image-spec grammar: algorithm-component (separator component)* ":" encoded
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+\Z")
_ENCODED = {
    "sha256": re.compile(r"^[a-f0-9]{64}\Z"),
    "sha512": re.compile(r"^[a-f0-9]{128}\Z"),
}
ALGORITHMS = tuple(_ENCODED)


def looks_like_digest(value: str) -> bool:
    """True when ``value`` has the general shape of a digest (``alg:hex``)."""
    return ":" in value and _DIGEST_RE.match(value) is not None


def parse(value: str) -> tuple[str, str]:
    """Split and validate a digest; raise DigestInvalid/UnsupportedDigest."""
    if not value or not _DIGEST_RE.match(value):
        raise DigestInvalid(f"invalid digest {value!r}", {"digest": value})
    algorithm, encoded = value.split(":", 1)
    pattern = _ENCODED.get(algorithm)
    if pattern is None:
        raise UnsupportedDigest(f"unsupported digest algorithm {algorithm!r}", {"digest": value})
    if not pattern.match(encoded):
        raise DigestInvalid(f"invalid {algorithm} digest {value!r}", {"digest": value})
    return algorithm, encoded


def new_hasher(algorithm: str = "sha256"):
    if algorithm not in _ENCODED:
        raise UnsupportedDigest(f"unsupported digest algorithm {algorithm!r}")
    return hashlib.new(algorithm)


def of_bytes(data: bytes, algorithm: str = "sha256") -> str:
    h = new_hasher(algorithm)
    h.update(data)
    return f"{algorithm}:{h.hexdigest()}"
