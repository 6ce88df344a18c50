"""The metrics directory of ``berth serve --workers N``, for the supervisor (imports nothing heavy:
the supervisor never loads the application, nor prometheus-client).

prometheus-client's multi-process mode keeps each worker's values in files under
``PROMETHEUS_MULTIPROC_DIR``; the variable must be in a worker's environment before it imports
``registry.metrics``. The supervisor calls ``prepare(os.environ)`` before it starts the workers,
``worker_exited(pid)`` when one ends, and ``cleanup(path)`` when it stops.
"""
from __future__ import annotations

import os
import shutil
import tempfile

ENV = "PROMETHEUS_MULTIPROC_DIR"
_PREFIX = "berth-metrics-"


def prepare(env: dict[str, str] | None = None) -> str:
    """A fresh, private directory for the workers' metric files, set as ``PROMETHEUS_MULTIPROC_DIR``
    in ``env`` (default ``os.environ``, which the children inherit). An operator's own setting is
    kept, emptied of an earlier run's files (they would be added to this run's). Returns it."""
    env = os.environ if env is None else env
    path = env.get(ENV)
    if path:
        os.makedirs(path, mode=0o700, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.unlink(os.path.join(path, name))
    else:
        path = tempfile.mkdtemp(prefix=_PREFIX)
        env[ENV] = path
    return path


def cleanup(path: str) -> None:
    """Remove a directory ``prepare`` created (an operator's own directory is left alone)."""
    if os.path.basename(path).startswith(_PREFIX):
        shutil.rmtree(path, ignore_errors=True)


def worker_exited(pid: int) -> None:
    """Tell prometheus-client a worker is gone (its live gauges stop counting; counters stay)."""
    if os.environ.get(ENV):
        from prometheus_client import multiprocess  # noqa: PLC0415

        multiprocess.mark_process_dead(pid)
