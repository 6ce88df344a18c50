"""Drivers for the content-driver contract suite: every test runs once per driver.

``store`` is a factory of *fresh driver instances on one store* (one directory, or one
bucket prefix): a test that calls it twice gets two independent drivers, as two
replicas would have, and passes upload state between them through JSON only.
"""
from __future__ import annotations

import itertools
import json
import uuid

import pytest

from registry.config import S3Config

DRIVERS = ["filesystem", "s3"]
_prefixes = itertools.count(1)


def s3_config(seaweedfs, bucket: str, prefix: str = "", redirect: bool = False) -> S3Config:
    return S3Config(endpoint=seaweedfs.endpoint, region=seaweedfs.region, bucket=bucket, prefix=prefix,
                    access_key=seaweedfs.access_key, secret_key=seaweedfs.secret_key, redirect=redirect)


class Store:
    """Makes drivers on one store; closes them all at the end."""

    def __init__(self, kind: str, make) -> None:
        self.kind = kind
        self._make = make
        self._drivers: list = []

    def __call__(self, **kwargs):
        driver = self._make(**kwargs)
        self._drivers.append(driver)
        return driver

    async def close(self) -> None:
        for d in self._drivers:
            await d.close()


@pytest.fixture(params=DRIVERS)
async def store(request, tmp_path):
    if request.param == "filesystem":
        try:
            from storage.content.filesystem import FilesystemDriver  # noqa: PLC0415
        except ImportError:
            pytest.skip("storage/content/filesystem.py is not on this branch (it comes with the store branch)")
        s = Store("filesystem", lambda **_: FilesystemDriver(tmp_path / "data"))
    else:
        from storage.content.s3 import S3Driver  # noqa: PLC0415

        seaweedfs = request.getfixturevalue("seaweedfs")
        bucket = request.getfixturevalue("s3_bucket")
        prefix = f"t{next(_prefixes)}-{uuid.uuid4().hex[:6]}"
        s = Store("s3", lambda redirect=False, **kw: S3Driver(s3_config(seaweedfs, bucket, prefix, redirect), **kw))
        s.seaweedfs, s.bucket, s.prefix = seaweedfs, bucket, prefix
    await s().check()  # as at start-up (bootstrap.start): the filesystem driver creates its directories
    yield s
    await s.close()


def roundtrip(state):
    """What the database gives back: the state through JSON."""
    return json.loads(json.dumps(state))
