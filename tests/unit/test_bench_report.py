"""The bench's pure parts: ratios per repetition, scope parsing of its token server, --target specs."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import report  # noqa: E402
from rows import Row  # noqa: E402
from servers import External  # noqa: E402
from tokenserver import parse_scopes  # noqa: E402


class FakeRow(Row):
    key, label, unit, target_ratio = "r", "a row", "req/s", 3.6


def test_ratios_are_per_repetition_pair_and_median():
    samples = {"r": {"berth": [{"value": 300.0}, {"value": 200.0}, {"value": 400.0}],
                     "distribution": [{"value": 100.0}, {"value": 100.0}, {"error": "x"}]}}
    (entry,) = report.analyse([FakeRow()], samples, ["berth", "distribution"])
    assert entry["ratios"] == [3.0, 2.0]  # the failed third repetition of distribution has no pair
    assert entry["median_ratio"] == 2.5
    assert entry["summaries"]["berth"]["median"] == 300.0
    assert entry["summaries"]["berth"]["min"] == 200.0


def test_a_row_without_the_reference_has_no_ratio():
    samples = {"r": {"berth": [{"value": 5.0}], "distribution": []}}
    (entry,) = report.analyse([FakeRow()], samples, ["berth", "distribution"])
    assert entry["median_ratio"] is None and entry["summaries"]["distribution"] is None


def test_token_server_scopes():
    assert parse_scopes(["repository:bench/a:pull,push", "repository:localhost:5000/x:pull registry:catalog:*"]) == [
        {"type": "repository", "name": "bench/a", "actions": ["pull", "push"]},
        {"type": "repository", "name": "localhost:5000/x", "actions": ["pull"]},
        {"type": "registry", "name": "catalog", "actions": ["*"]},
    ]


def test_target_spec():
    t = External.parse("harbor=http://127.0.0.1:8080/,user=bob,password=s=cret")
    assert (t.name, t.base, t.user, t.password, t.managed) == ("harbor", "http://127.0.0.1:8080", "bob", "s=cret", False)
    with pytest.raises(ValueError):
        External.parse("nourl")
