"""Blob content behind one small interface (``driver.ContentDriver``): filesystem or S3."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .driver import ContentDriver, UploadState

if TYPE_CHECKING:  # the configuration lives in registry.config; storage never imports registry at run time
    from registry.config import StorageConfig


def open_driver(storage: "StorageConfig", data_dir: Path) -> ContentDriver:
    """The content driver the configuration names (``storage.driver``)."""
    if storage.driver == "filesystem":
        from .filesystem import FilesystemDriver  # noqa: PLC0415

        return FilesystemDriver(Path(data_dir))
    if storage.driver == "s3":
        from .s3 import S3Driver  # noqa: PLC0415

        return S3Driver(storage.s3)
    raise ValueError(f"unknown storage driver {storage.driver!r}: use filesystem or s3")


__all__ = ["ContentDriver", "UploadState", "open_driver"]
