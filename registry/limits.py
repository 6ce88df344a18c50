"""Request limits: one tenant, or one client, cannot take a process away from the others.

* **Rate limits** (``rate_limit``): token buckets per principal and per tenant on every /v2/
  request that passed the guard. A bucket holds up to ``burst`` requests and refills at
  ``rate`` per second; a request takes one from its principal's bucket and one from its
  tenant's (the repository's first component), or is answered ``429 TOOMANYREQUESTS`` with
  ``Retry-After`` (seconds until a request would pass) and takes nothing.

  The buckets live in each process's memory: a limit is protection, not data, and a bucket in
  the database would cost a write on every pull. So the configured rates hold **per process**
  (per replica, per ``--workers`` worker): a principal whose requests are spread over N
  processes may reach N times the rate, and a client on one keep-alive connection (one
  process) is held to it. A restarted process starts with full buckets.
* **Header size** (``check_headers``): the request's header lines together above
  ``limits.max_header_bytes`` → ``431`` with the OCI error body. One line longer than
  ``limits.max_header_field``, or more than ``limits.max_headers`` lines, are refused by
  aiohttp's parser itself (``400``, before any handler runs): ``handler_args``.

Principals: the user, robot or service token the guard identified; anonymous callers, and
every caller when auth is off (``--no-auth``), by client address (``auth.trusted_proxies``
decides when ``X-Forwarded-For`` is believed). Upload sessions per principal are counted in
the database (``storage.catalog``), so that limit holds across replicas exactly.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable

from aiohttp import web

from .config import LimitsConfig
from .errors import APIError

MAX_KEYS = 50_000  # buckets kept per table before the full (= unused) ones are dropped

# the identity the token guard found (registry.auth.guard sets it; absent with auth off)
IDENTITY_KEY: web.RequestKey[object] = web.RequestKey("berth_identity", object)
LIMITERS = web.AppKey("limiters", object)


class Buckets:
    """Token buckets by key: up to ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: float, max_keys: int = MAX_KEYS) -> None:
        self.rate = float(rate)
        self.burst = max(1.0, float(burst))
        self.max_keys = max_keys
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def _level(self, key: str, now: float) -> float:
        state = self._buckets.get(key)
        if state is None:
            return self.burst
        tokens, at = state
        return min(self.burst, tokens + max(0.0, now - at) * self.rate)

    def wait(self, key: str, now: float) -> float:
        """Seconds until ``key`` may make a request (0: now)."""
        level = self._level(key, now)
        return 0.0 if level >= 1.0 else (1.0 - level) / self.rate

    def take(self, key: str, now: float) -> None:
        self._buckets[key] = (self._level(key, now) - 1.0, now)
        if len(self._buckets) > self.max_keys:
            self._prune(now)

    def _prune(self, now: float) -> None:
        """Drop the buckets that have refilled: a full bucket is what a missing one means."""
        for key in [k for k in self._buckets if self._level(k, now) >= self.burst]:
            del self._buckets[key]


class Limiters:
    """The rate-limit tables of one process."""

    def __init__(self, config: LimitsConfig, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.principals = (
            Buckets(config.rate_per_principal, config.burst_per_principal) if config.rate_per_principal > 0 else None
        )
        self.tenants = (
            Buckets(config.rate_per_tenant, config.burst_per_tenant) if config.rate_per_tenant > 0 else None
        )

    def admit(self, principal: str, tenant: str | None) -> tuple[float, str | None]:
        """(0, None) and one request taken from both buckets; else (seconds to wait, which
        limit) and nothing taken."""
        now = self.clock()
        checks = []
        if self.principals is not None:
            checks.append((self.principals, principal, "principal"))
        if self.tenants is not None and tenant is not None:
            checks.append((self.tenants, tenant, "tenant"))
        for buckets, key, what in checks:
            wait = buckets.wait(key, now)
            if wait > 0:
                return wait, what
        for buckets, key, _ in checks:
            buckets.take(key, now)
        return 0.0, None


def principal_of(request: web.Request) -> str:
    """Who the limits count a request against: ``alice``, ``acme+ci``, ``service:<subject>``,
    or ``addr:<client address>`` for anonymous callers and with auth off."""
    identity = request.get(IDENTITY_KEY)
    kind = getattr(identity, "kind", "anonymous")
    if kind == "service":
        return f"service:{identity.username}"
    if kind != "anonymous" and identity.username:
        return identity.username
    from .auth.credentials import client_address  # noqa: PLC0415 - auth imports this module

    return f"addr:{client_address(request)}"


def handler_args(config: LimitsConfig) -> dict:
    """aiohttp's own parser limits (web.Application(handler_args=…))."""
    return {
        "max_line_size": config.max_header_field,
        "max_field_size": config.max_header_field,
        "max_headers": config.max_headers,
    }


def check_headers(request: web.BaseRequest, limit: int) -> None:
    """``limits.max_header_bytes``: 431 when the header lines together are larger (run by
    ``registry.middleware.front`` on every request)."""
    if limit > 0:
        size = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)  # "k: v\r\n"
        if size > limit:
            raise APIError(
                "SIZE_INVALID",
                f"request headers are {size} bytes, more than limits.max_header_bytes ({limit})",
                {"limit": limit, "size": size},
                status=431,
            )


def rate_limit(limiters: Limiters):
    """The /v2/ rate limits; runs after the guard (it counts the principal the guard found)."""

    @web.middleware
    async def limit(request: web.Request, handler):
        if not request.path.startswith("/v2/") or (limiters.principals is None and limiters.tenants is None):
            return await handler(request)
        name = request.match_info.get("name")
        tenant = name.partition("/")[0] if name and "/" in name else None
        wait, what = limiters.admit(principal_of(request), tenant)
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise APIError(
                "TOOMANYREQUESTS",
                f"too many requests for this {what}; retry in {seconds} s",
                {"limit": what},
                headers={"Retry-After": str(seconds)},
            )
        return await handler(request)

    return limit


__all__ = ["Buckets", "Limiters", "IDENTITY_KEY", "principal_of", "check_headers", "rate_limit", "handler_args"]
