"""SQL metadata schema (SQLAlchemy 2 declarative). docs/storage.md describes it."""
from __future__ import annotations

import time

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


def now() -> float:
    return time.time()


class Base(DeclarativeBase):
    pass


class Repository(Base):
    __tablename__ = "repositories"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), unique=True, nullable=False)
    created_at: Mapped[float] = mapped_column(default=now)


class Blob(Base):
    """A blob known to be stored under blobs/ (global, deduplicated)."""
    __tablename__ = "blobs"
    digest: Mapped[str] = mapped_column(String(140), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    created_at: Mapped[float] = mapped_column(default=now)


class RepositoryBlob(Base):
    """Which blobs a repository may serve (pushed or mounted there)."""
    __tablename__ = "repository_blobs"
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(ForeignKey("blobs.digest"), primary_key=True)
    created_at: Mapped[float] = mapped_column(default=now)
    __table_args__ = (Index("ix_repository_blobs_digest", "digest"),)


class Manifest(Base):
    __tablename__ = "manifests"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False)
    digest: Mapped[str] = mapped_column(String(140), nullable=False)
    media_type: Mapped[str] = mapped_column(String(255), nullable=False)
    size: Mapped[int] = mapped_column(BigInteger, nullable=False)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)  # the bytes exactly as pushed
    artifact_type: Mapped[str | None] = mapped_column(String(255))
    annotations: Mapped[str | None] = mapped_column(Text)  # JSON object, for referrers
    subject: Mapped[str | None] = mapped_column(String(140))  # digest of the subject, if any
    created_at: Mapped[float] = mapped_column(default=now)
    __table_args__ = (
        UniqueConstraint("repository_id", "digest"),
        Index("ix_manifests_subject", "repository_id", "subject"),
    )


class ManifestReference(Base):
    """What a manifest points at: blobs (config, layers) or child manifests (index entries)."""
    __tablename__ = "manifest_references"
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"), primary_key=True)
    digest: Mapped[str] = mapped_column(String(140), primary_key=True)
    kind: Mapped[str] = mapped_column(String(8), primary_key=True)  # "blob" | "manifest"
    __table_args__ = (Index("ix_manifest_references_digest", "digest", "kind"),)


class Tag(Base):
    __tablename__ = "tags"
    repository_id: Mapped[int] = mapped_column(ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    manifest_id: Mapped[int] = mapped_column(ForeignKey("manifests.id", ondelete="CASCADE"), nullable=False)
    updated_at: Mapped[float] = mapped_column(default=now)


class Upload(Base):
    """An upload session; its bytes are in uploads/<id>, its offset is the file's size."""
    __tablename__ = "uploads"
    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    repository: Mapped[str] = mapped_column(String(255), nullable=False)
    started_at: Mapped[float] = mapped_column(default=now)
    updated_at: Mapped[float] = mapped_column(default=now)
