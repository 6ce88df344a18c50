"""CI gating (tests/ci.py): any CI value but false/0/no/off makes a missing program a failure.

Checked the way CI meets it: a pytest subprocess runs tests that need a missing client and
a missing PostgreSQL under each ``CI`` value, and its summary must say what happened and why.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ci import in_ci

REPO = Path(__file__).resolve().parents[2]

PROBE = '''
import pytest

import tests.postgres
from tests.conftest import postgres_cluster  # noqa: F401  (the real fixture)
from tests.e2e.conftest import require


def test_needs_a_client():
    require("berth-no-such-client")


def test_needs_postgres(request, monkeypatch):
    monkeypatch.setattr(tests.postgres, "missing_reason", lambda: "PostgreSQL is not installed (probe)")
    request.getfixturevalue("postgres_cluster")
'''

CI_VALUES = ["true", "TRUE", "1", "yes", "on", "github-actions"]
NOT_CI_VALUES = [None, "", "false", "False", "0", "no", "off"]


@pytest.mark.parametrize("value", CI_VALUES)
def test_ci_values(value):
    assert in_ci({"CI": value})


@pytest.mark.parametrize("value", NOT_CI_VALUES)
def test_not_ci_values(value):
    assert not in_ci({} if value is None else {"CI": value})


def _run_probe(tmp_path: Path, ci: str | None) -> str:
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    env["PYTHONPATH"] = str(REPO)
    p = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-rfEs", "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
         "-c", os.devnull, str(probe)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )
    return p.stdout + p.stderr


# one pytest subprocess each (~3 s): the other values are in_ci's, checked above
@pytest.mark.parametrize("ci", ["yes"])
def test_missing_programs_fail_in_ci(tmp_path, ci):
    out = _run_probe(tmp_path, ci)
    assert re.search(r"\b2 failed\b", out), out
    assert "berth-no-such-client is not installed" in out, out
    assert "PostgreSQL is not installed (probe)" in out, out
    assert f"CI={ci!r}: required in CI" in out, out


@pytest.mark.parametrize("ci", [None])
def test_missing_programs_skip_with_reason_outside_ci(tmp_path, ci):
    out = _run_probe(tmp_path, ci)
    assert re.search(r"\b2 skipped\b", out), out
    assert "failed" not in out, out
    # -rs: the summary says what was skipped and why
    assert re.search(r"SKIPPED \[1\] .*berth-no-such-client is not installed.*not CI, so skipped", out), out
    assert re.search(r"SKIPPED \[1\] .*PostgreSQL is not installed \(probe\).*not CI, so skipped", out), out
