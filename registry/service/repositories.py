"""The repository listing (``/v2/_catalog``)."""
from __future__ import annotations

from collections.abc import Callable

from storage.catalog import Catalog


class Repositories:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def list(self, n: int | None, last: str | None, visible: Callable[[str], bool]) -> list[str]:
        """Names after ``last`` in lexical order, at most ``n``, only those ``visible`` allows."""
        return await self.catalog.repositories(n, last, visible)
