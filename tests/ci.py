"""Whether this run is CI, decided in one place.

CI providers set ``CI`` to ``true``, ``1``, ``yes``, ``True``… Any non-empty value other
than ``false``/``0``/``no``/``off`` (any case) means CI: then a missing real client, a
missing PostgreSQL or a missing program a test needs is a failure, never a skip.
"""
from __future__ import annotations

import os

import pytest

_NOT_CI = {"", "false", "0", "no", "off"}


def in_ci(environ=os.environ) -> bool:
    return environ.get("CI", "").strip().lower() not in _NOT_CI


def skip_or_fail(reason: str) -> None:
    """Skip the test with ``reason``; under CI fail it instead (never returns)."""
    if in_ci():
        pytest.fail(f"{reason} (CI={os.environ.get('CI')!r}: required in CI, so this is a failure, not a skip)",
                    pytrace=False)
    pytest.skip(f"{reason} (not CI, so skipped; CI=true makes this a failure)")
