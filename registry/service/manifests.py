"""The manifest service: get, put (with its reference checks), delete, referrers."""
from __future__ import annotations

from dataclasses import dataclass

from storage import digest as digests
from storage import manifests
from storage.catalog import Catalog, ManifestRecord
from storage.errors import DigestInvalid, ManifestInvalid


@dataclass(frozen=True)
class PutResult:
    digest: str
    subject: str | None  # the subject's digest (the OCI-Subject header), if any


class Manifests:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    async def get(self, name: str, reference: str) -> ManifestRecord:
        """By tag or digest; NameUnknown / ManifestUnknown otherwise."""
        return await self.catalog.get_manifest(name, reference)

    async def put(self, name: str, reference: str, by_digest: bool, body: bytes, content_type: str | None) -> PutResult:
        """Parse and store a manifest, moving the tag ``reference`` to it unless it is a digest.
        Every blob and child manifest it references must be in the repository
        (ManifestBlobUnknown); the check and the write are one transaction."""
        if not body:
            raise ManifestInvalid("empty manifest")
        parsed = manifests.parse(body, content_type)
        algorithm = reference.split(":", 1)[0] if by_digest else "sha256"
        digest = digests.of_bytes(body, algorithm)
        if by_digest and digest != reference:
            raise DigestInvalid("manifest digest does not match the reference", {"reference": reference, "actual": digest})
        await self.catalog.put_manifest(name, digest, parsed, body, None if by_digest else reference)
        return PutResult(digest, parsed.subject.digest if parsed.subject is not None else None)

    async def delete(self, name: str, reference: str, by_digest: bool) -> None:
        """By digest: the manifest and every tag on it (refused while an index lists it).
        By tag: the tag only."""
        if by_digest:
            await self.catalog.delete_manifest(name, reference)
        else:
            await self.catalog.delete_tag(name, reference)

    async def referrers(self, name: str, subject: str, artifact_type: str | None) -> list[dict]:
        """Descriptors of the manifests in ``name`` whose subject is ``subject``."""
        return await self.catalog.referrers(name, subject, artifact_type)
