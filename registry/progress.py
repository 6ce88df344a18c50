"""Progress of long offline commands (``berth gc``, ``berth fsck``, ``berth db upgrade``) on a
terminal: one line on stderr, redrawn in place (``\\r``) at most ten times a second, ended by a
newline. Only when stderr is a TTY (``Line.for_stderr()`` is None otherwise), so scripts and
tests that read the output see nothing extra. No dependency: a status line is all it is.
"""
from __future__ import annotations

import sys
import time
from typing import TextIO

INTERVAL = 0.1  # seconds between two redraws (the last one is always drawn)
WIDTH = 30  # characters of the bar


class Line:
    """One status line, redrawn in place."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self._last = 0.0
        self._width = 0  # of the last text drawn, to blank what a shorter one leaves
        self.drawn = False

    @classmethod
    def for_stderr(cls, enabled: bool = True) -> Line | None:
        """A line on ``sys.stderr`` when it is a terminal (and ``enabled``), else None."""
        stream = sys.stderr
        return cls(stream) if enabled and stream.isatty() else None

    def show(self, text: str, *, final: bool = False) -> None:
        """Draw ``text`` (skipped when the last redraw is under ``INTERVAL`` old, unless ``final``)."""
        now = time.monotonic()
        if not final and self.drawn and now - self._last < INTERVAL:
            return
        self._last = now
        pad = max(0, self._width - len(text))
        self._width = len(text)
        self.stream.write("\r" + text + " " * pad)
        self.stream.flush()
        self.drawn = True

    def close(self) -> None:
        """End the line (when anything was drawn): what is printed next starts on a line of its own."""
        if self.drawn:
            self.stream.write("\n")
            self.stream.flush()
            self.drawn = False


def bar(fraction: float, width: int = WIDTH) -> str:
    fill = int(min(1.0, max(0.0, fraction)) * width)
    return f"[{'#' * fill}{'.' * (width - fill)}]"


def human(n: float) -> str:
    """Bytes for people: ``512 B``, ``1.5 KiB`` … ``2.0 TiB``."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
