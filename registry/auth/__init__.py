"""Authorization seam between the HTTP API and whatever authenticates requests.

Handlers never look at credentials: the guard middleware (``registry.auth.guard``)
puts an :class:`Access` on every request as ``request["access"]``, and handlers
that need a decision beyond the route's own scope (cross-repository mount, catalog
filtering) ask it.
"""
from __future__ import annotations

from typing import Protocol


class Access(Protocol):
    def allows(self, repository: str, action: str) -> bool:
        """May the caller do ``action`` (pull, push, delete) on ``repository``?"""
        ...


class FullAccess:
    """Everything is allowed (auth disabled)."""

    def allows(self, repository: str, action: str) -> bool:
        return True


FULL_ACCESS = FullAccess()
