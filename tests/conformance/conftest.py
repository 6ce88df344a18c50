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

Remote mode: with ``OCI_ROOT_URL`` set (as for the Go suite) the workflows talk to that
registry over real HTTP (one ``aiohttp.ClientSession`` per module, or per session with
``OCI_SHARED_REGISTRY=1``), in namespace ``OCI_NAMESPACE`` (default ``berth/conformance``;
the Go suite has no default) and ``OCI_CROSSMOUNT_NAMESPACE``, with Basic auth from
``OCI_USERNAME``/``OCI_PASSWORD``. No database parameter then, and the modules run in
the Go order (pull, push, content discovery, content management) since they share the
registry. ``bench/conformance_compare.py`` runs it against Berth and Distribution.
"""
from __future__ import annotations

import contextlib

import aiohttp
import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from registry.app import create_app
from registry.config import Config

from .suite import LOOP_SCOPE, PASSWORD, REMOTE, ROOT_URL, SHARED_REGISTRY, USERNAME, Registry, build_content


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


@contextlib.asynccontextmanager
async def _remote():
    """A client for the registry at OCI_ROOT_URL (reggie: no cookie jar, no redirects)."""
    auth = aiohttp.BasicAuth(USERNAME, PASSWORD) if USERNAME or PASSWORD else None
    async with aiohttp.ClientSession(
        base_url=ROOT_URL + "/", auth=auth, cookie_jar=aiohttp.DummyCookieJar(),
        timeout=aiohttp.ClientTimeout(total=60),
        headers={"User-Agent": "distribution-spec-conformance-tests"},
    ) as session:
        yield session


# the Go runner's workflow order; in remote mode every module shares the one registry
_GO_ORDER = ("test_pull", "test_push", "test_discovery", "test_management")


def pytest_collection_modifyitems(session, config, items):
    if not REMOTE:
        return

    def rank(item):
        module = item.module.__name__.rsplit(".", 1)[-1] if getattr(item, "module", None) else ""
        return _GO_ORDER.index(module) if module in _GO_ORDER else len(_GO_ORDER)

    items.sort(key=rank)  # stable: file order within a module is kept


if REMOTE and SHARED_REGISTRY:

    @pytest_asyncio.fixture(scope="session", loop_scope="session")
    async def _shared_remote():
        async with _remote() as session:
            yield session, build_content()

    @pytest_asyncio.fixture(scope="module", loop_scope=LOOP_SCOPE)
    async def reg(_shared_remote):
        session, content = _shared_remote
        yield Registry(session, content)

elif REMOTE:

    @pytest_asyncio.fixture(scope="module", loop_scope=LOOP_SCOPE)
    async def reg():
        async with _remote() as session:
            yield Registry(session, build_content())

elif SHARED_REGISTRY:

    @pytest_asyncio.fixture(scope="session", loop_scope="session")
    async def _shared_berth(tmp_path_factory, session_database_url):
        async with _berth(tmp_path_factory, session_database_url) as client:
            yield client, build_content()

    @pytest_asyncio.fixture(scope="module", loop_scope=LOOP_SCOPE)
    async def reg(_shared_berth):
        client, content = _shared_berth
        yield Registry(client, content)  # fresh workflow state, shared registry

else:

    @pytest_asyncio.fixture(scope="module", loop_scope=LOOP_SCOPE)
    async def reg(tmp_path_factory, module_database_url):
        async with _berth(tmp_path_factory, module_database_url) as client:
            yield Registry(client, build_content())
