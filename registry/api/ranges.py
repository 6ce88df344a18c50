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

_SPEC = re.compile(r"^[ \t]*([0-9]*)[ \t]*-[ \t]*([0-9]*)[ \t]*$")  # ASCII digits only (DIGIT)
_HUGE = 1 << 63  # stands for any position beyond every blob (int() refuses > 4300 digits)


class RangeNotSatisfiable(Exception):
    def __init__(self, size: int) -> None:
        super().__init__(f"range not satisfiable (size {size})")
        self.size = size


def _pos(digits: str) -> int:
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 18 else _HUGE


def byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    if not header:
        return None
    unit, sep, ranges = header.partition("=")
    if not sep or unit.strip().lower() != "bytes":
        return None
    specs = [s for s in ranges.split(",") if s.strip()]  # empty list elements do not count (RFC 9110 §5.6.1)
    if len(specs) != 1:
        return None  # none, or multi-range: the whole blob
    m = _SPEC.match(specs[0])
    if m is None:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":  # suffix: the last N bytes (all of them when N exceeds the size)
        n = _pos(last)
        if n == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size - 1
    start = _pos(first)
    if last != "" and _pos(last) < start:
        return None  # invalid range-spec: the header is ignored
    if start >= size:
        raise RangeNotSatisfiable(size)
    end = size - 1 if last == "" else min(_pos(last), size - 1)
    return start, end
