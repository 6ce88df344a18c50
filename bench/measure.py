"""What one bench sample costs: wall time, server CPU and RSS, client CPU, the rest of the machine.

CPU comes from /proc: the server's process tree (a Berth with --workers N is a supervisor and
N workers; Distribution is the registry plus the bench token server), this process plus the
children it reaped meanwhile (wrk, curl, skopeo), and /proc/stat for the whole machine:
"rest of machine" = machine busy time − server − client, so a disturbed sample shows.
"""
from __future__ import annotations

import asyncio
import os
import resource
import threading
import time

from servers import tree_pids

TICK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM in bytes (0 when the process is gone)."""
    out = {"VmRSS": 0, "VmHWM": 0}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":", 1)[0]
                if key in out:
                    out[key] = int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def proc_cpu(pid: int) -> float:
    """utime + stime of a process in seconds."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK
    except (FileNotFoundError, ProcessLookupError):
        return 0.0


def busy_cpu() -> float:
    """Non-idle CPU seconds of the whole machine so far (all CPUs, from /proc/stat)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)  # idle + iowait
    return (sum(v[:8]) - idle) / TICK


def client_cpu() -> float:
    """This process and every child it has reaped (wrk, curl, skopeo), user + system."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


async def wait_idle(max_wait: float, threshold: float = 0.3) -> float:
    """Wait (at most max_wait s) until the machine uses < threshold CPUs; return the seconds waited."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < max_wait:
        b0, w0 = busy_cpu(), time.monotonic()
        await asyncio.sleep(0.5)
        if (busy_cpu() - b0) / (time.monotonic() - w0) < threshold:
            break
    return round(time.monotonic() - t0, 1)


class ProcessTree:
    """The processes of one server (empty for a registry somebody else runs)."""

    def __init__(self, root_pids: list[int]) -> None:
        self.root_pids = root_pids

    def pids(self) -> list[int]:
        return [p for root in self.root_pids for p in tree_pids(root)]

    def cpu(self) -> float:
        return sum(proc_cpu(p) for p in self.pids())

    def rss(self) -> int:
        return sum(proc_status(p)["VmRSS"] for p in self.pids())

    def hwm(self) -> int:
        return sum(proc_status(p)["VmHWM"] for p in self.pids())

    def reset_hwm(self) -> None:
        for p in self.pids():
            try:
                with open(f"/proc/{p}/clear_refs", "w") as f:
                    f.write("5")
            except OSError:
                pass


class RSSSampler(threading.Thread):
    """Samples a process tree's RSS every `interval` s; `mark()` starts a new window."""

    def __init__(self, tree: ProcessTree, interval: float = 0.05) -> None:
        super().__init__(daemon=True)
        self.tree, self.interval = tree, interval
        self._stop_evt = threading.Event()
        self._lock = threading.Lock()
        self.peak = 0

    def mark(self) -> int:
        rss = self.tree.rss()
        with self._lock:
            self.peak = rss
        return rss

    def run(self) -> None:
        while not self._stop_evt.wait(self.interval):
            rss = self.tree.rss()
            with self._lock:
                self.peak = max(self.peak, rss)

    def stop(self) -> None:
        self._stop_evt.set()


class Sample:
    """Context manager around one measured run of a row on one server; `.result` is its dict."""

    def __init__(self, tree: ProcessTree, sampler: RSSSampler | None) -> None:
        self.tree, self.sampler = tree, sampler
        self.result: dict = {}

    def __enter__(self) -> dict:
        self.tree.reset_hwm()
        self.rss_start = self.sampler.mark() if self.sampler else 0
        self.server0, self.client0, self.busy0 = self.tree.cpu(), client_cpu(), busy_cpu()
        self.t0 = time.perf_counter()
        return self.result

    def __exit__(self, *exc) -> None:
        elapsed = time.perf_counter() - self.t0
        server = self.tree.cpu() - self.server0
        client = client_cpu() - self.client0
        rest = busy_cpu() - self.busy0 - server - client
        self.result.update(seconds=round(elapsed, 3), server_cpu_s=round(server, 2), client_cpu_s=round(client, 2),
                           rest_cpu_s=round(max(rest, 0.0), 2))
        if self.sampler:
            peak = max(self.sampler.peak, self.tree.rss(), self.tree.hwm())
            self.result.update(rss_start=self.rss_start, rss_growth=peak - self.rss_start)
