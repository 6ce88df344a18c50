"""Grammar of repository names, tags and references (distribution-spec), pure functions."""
from __future__ import annotations

import re

from storage import digest as digests

from .errors import APIError

# distribution-spec: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*
_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}\Z")
MAX_NAME = 255


def is_name(name: str) -> bool:
    return len(name) <= MAX_NAME and NAME_RE.match(name) is not None


def repository(name: str) -> str:
    if not is_name(name):
        raise APIError("NAME_INVALID", f"invalid repository name {name!r}", {"name": name})
    return name


def is_tag(tag: str) -> bool:
    return TAG_RE.match(tag) is not None


def tag(value: str) -> str:
    if not is_tag(value):
        raise APIError("TAG_INVALID", f"invalid tag {value!r}", {"tag": value})
    return value


def digest(value: str) -> str:
    try:
        digests.parse(value)
    except Exception as e:  # storage.errors.DigestInvalid / UnsupportedDigest
        raise APIError("DIGEST_INVALID", str(e), {"digest": value}) from None
    return value


def reference(value: str) -> tuple[str, bool]:
    """A manifest reference: (value, is_digest). Raises on neither a tag nor a digest."""
    if ":" in value:
        return digest(value), True
    if is_tag(value):
        return value, False
    raise APIError("TAG_INVALID", f"invalid reference {value!r}", {"reference": value})
