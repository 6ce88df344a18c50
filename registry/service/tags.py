"""The tag service: a repository's tags, in lexical order, paginated."""
from __future__ import annotations

from storage.catalog import Catalog


class Tags:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def list(self, name: str, n: int | None, last: str | None) -> list[str]:
        """At most ``n`` tags after ``last``; NameUnknown for an unknown repository."""
        return await self.catalog.tags(name, n, last)
