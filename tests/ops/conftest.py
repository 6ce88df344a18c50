"""Fixtures for the observability tests: an app served with Berth's access logger (what
``berth serve`` uses), and the process's logging captured as text."""
from __future__ import annotations

import io
import json
import logging

import pytest

from registry import logs
from registry.app import create_app
from registry.config import Config
from tests.conftest import data_dir


class Captured:
    """What the process logged, as written by the logging thread."""

    def __init__(self) -> None:
        self.stream = io.StringIO()

    def text(self) -> str:
        logs.flush()
        return self.stream.getvalue()

    def lines(self) -> list[str]:
        return [line for line in self.text().splitlines() if line]

    def json(self) -> list[dict]:
        return [json.loads(line) for line in self.lines()]

    def access(self) -> list[dict]:
        return [d for d in self.json() if d.get("logger") == logs.ACCESS_LOGGER]


@pytest.fixture
def logged(config):
    """Configure logging as ``berth serve`` does, into a buffer; restore the test logging after."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    cap = Captured()

    def configure(cfg=None):
        logs.configure(cfg or config, stream=cap.stream)
        return cap

    configure.captured = cap
    yield configure
    logs.stop()
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in saved[0]:
        root.addHandler(h)
    root.setLevel(saved[1])


@pytest.fixture
def config(tmp_path, sqlite_template) -> Config:
    """SQLite only: what these tests check does not depend on the database (test_health runs
    the readiness checks on both)."""
    cfg = Config(data_dir=data_dir(tmp_path, None, sqlite_template))
    cfg.auth.enabled = False
    return cfg


@pytest.fixture
def serve(aiohttp_server, aiohttp_client):
    """``await serve(config)`` → a test client of Berth served with ``logs.server_kwargs`` (the
    access logger and request metrics), as ``berth serve`` does."""

    async def start(cfg: Config):
        app = create_app(cfg)
        server = await aiohttp_server(app, **logs.server_kwargs(cfg))
        return await aiohttp_client(server)

    return start


@pytest.fixture
async def client(serve, config):
    return await serve(config)
