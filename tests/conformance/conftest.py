"""The registry the conformance workflows talk to: in-process Berth with auth disabled.

The Go suite keeps shared state across the ``g.Specify`` blocks of a workflow; here each
workflow module gets one ``reg`` (its closure variables live in ``reg.state``) and its
tests run in file order, as Ginkgo runs the specs (it does not stop at a failure).

By default every module gets a fresh registry (like running the Go suite with one
OCI_TEST_* workflow enabled at a time). With ``OCI_SHARED_REGISTRY=1`` all modules share
one registry and one namespace, as one full Go run does; give the files in the Go order:

    OCI_SHARED_REGISTRY=1 pytest tests/conformance/test_pull.py tests/conformance/test_push.py \
        tests/conformance/test_discovery.py tests/conformance/test_management.py

Either way each workflow runs once per database of ``BERTH_TEST_DATABASES`` (SQLite and a
throwaway PostgreSQL by default, see tests/conftest.py), ids ``[sqlite]`` / ``[postgres]``.
"""
from __future__ import annotations

import contextlib

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.config import Config

from .suite import LOOP_SCOPE, SHARED_REGISTRY, Registry, build_content


@contextlib.asynccontextmanager
async def _berth(tmp_path_factory: pytest.TempPathFactory, database_url: str | None):
    cfg = Config(data_dir=tmp_path_factory.mktemp("conformance") / "data", database_url=database_url)
    cfg.auth.enabled = False
    client = TestClient(TestServer(create_app(cfg)))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def _shared_berth(tmp_path_factory, session_database_url):
    async with _berth(tmp_path_factory, session_database_url) as client:
        yield client, build_content()


if SHARED_REGISTRY:

    @pytest_asyncio.fixture(scope="module", loop_scope=LOOP_SCOPE)
    async def reg(_shared_berth):
        client, content = _shared_berth
        yield Registry(client, content)  # fresh workflow state, shared registry

else:

    @pytest_asyncio.fixture(scope="module", loop_scope=LOOP_SCOPE)
    async def reg(tmp_path_factory, module_database_url):
        async with _berth(tmp_path_factory, module_database_url) as client:
            yield Registry(client, build_content())
