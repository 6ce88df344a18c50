"""Limits checked on a JSON document *before* ``json.loads`` (pure; no I/O).

``json.loads`` recurses once per nesting level, so ``[[[[…`` 100,000 levels deep raises
``RecursionError``, and it turns a number of any length into a Python int, which later
arithmetic may choke on (``OverflowError``). Both ends were answered 500. ``check`` scans
the text once, skipping strings, and refuses:

* nesting deeper than ``MAX_DEPTH`` (64) arrays/objects: an OCI manifest needs 3;
* a run of more than ``MAX_NUMBER_DIGITS`` (40) digits in a number: a 64-bit size has 19.

Used by the manifest parser (``storage.manifests``: MANIFEST_INVALID) and the admin API
(``registry.admin.auth``: INVALID_REQUEST); docs/api.md and docs/auth.md state the limits.
"""
from __future__ import annotations

import json
import re

MAX_DEPTH = 64
MAX_NUMBER_DIGITS = 40

# a whole string (escapes included), one bracket, or a run of digits outside strings
_TOKENS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]|[0-9]+', re.DOTALL)


class JSONTooComplex(ValueError):
    """The document nests too deeply or holds an absurdly long number."""


def decode(raw: bytes | str) -> str:
    """The text of a JSON document (UTF-8, -16 or -32, as ``json.loads`` accepts it); ValueError if undecodable."""
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode(json.detect_encoding(raw))
    except UnicodeDecodeError as e:
        raise ValueError(f"not valid text: {e}") from None


def check(text: str, max_depth: int = MAX_DEPTH, max_digits: int = MAX_NUMBER_DIGITS) -> None:
    """Raise JSONTooComplex when ``text`` nests deeper than ``max_depth`` or has a longer number."""
    depth = 0
    for m in _TOKENS.finditer(text):
        c = text[m.start()]
        if c == '"':
            continue
        if c in "[{":
            depth += 1
            if depth > max_depth:
                raise JSONTooComplex(f"JSON nested deeper than {max_depth} levels")
        elif c in "]}":
            depth -= 1
        elif m.end() - m.start() > max_digits:
            raise JSONTooComplex(f"JSON number longer than {max_digits} digits")


def loads(raw: bytes | str, max_depth: int = MAX_DEPTH, max_digits: int = MAX_NUMBER_DIGITS):
    """``json.loads`` after ``check``: ValueError (JSONTooComplex included) for anything it refuses."""
    text = decode(raw)
    check(text, max_depth, max_digits)
    return json.loads(text)
