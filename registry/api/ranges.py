"""The ``Range`` request header of a blob GET (RFC 9110 §14), decided in one place.

``byte_range(header, size)`` answers what to serve:

* ``None`` — the whole content with 200: no header, a unit other than ``bytes`` (a server
  MUST ignore units it does not understand), a malformed or invalid range-set
  (``bytes=abc``, ``bytes=5-2``; a server MAY ignore an invalid header), or several ranges
  (Berth does not produce ``multipart/byteranges``; RFC 9110 lets it serve the whole
  representation instead — docs/api.md says so);
* ``(start, end)`` — one satisfiable range, ``end`` inclusive, for 206 with
  ``Content-Range: bytes start-end/size``;
* raises ``RangeNotSatisfiable`` for a valid single range that no byte of the content
  satisfies (``bytes=2000-`` on a 1,000-byte blob, ``bytes=-0``): 416 with
  ``Content-Range: bytes */size``.
"""
from __future__ import annotations

import re

_SPEC = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable (size {size})")
        self.size = size


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    if not header:
        return None
    unit, sep, ranges = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [s for s in ranges.split(",")]
    if len(specs) != 1:
        return None  # multi-range (or an empty element): the whole blob
    m = _SPEC.match(specs[0])
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if len(first) > 19 or len(last) > 19:  # beyond any blob size: still well-formed
        if first == "" or int(first) >= size:
            raise RangeNotSatisfiable(size)
        return int(first), size - 1
    if first == "":  # suffix: the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size - 1
    start = int(first)
    if last != "" and int(last) < start:
        return None  # invalid range-spec: the header is ignored
    if start >= size:
        raise RangeNotSatisfiable(size)
    end = size - 1 if last == "" else min(int(last), size - 1)
    return start, end
