"""HTTP Basic credentials and the password login every entry point shares.

The /v2/ guard, the token realm and the admin API all log people in the same way:
through ``AuthService.login`` (bcrypt, the credential cache) and its failed-login
limiter, which answers 429 TOOMANYREQUESTS with ``Retry-After``.
"""
from __future__ import annotations

import base64
import binascii
import ipaddress

from aiohttp import web

from ..errors import APIError
from ..services import SERVICES
from .service import AuthService, Identity, TooManyAttempts


def _address(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(value.strip().strip("[]"))
    except ValueError:
        return None


def client_address(request: web.Request) -> str:
    """The client's address: the TCP peer, unless the peer is one of ``auth.trusted_proxies``.

    Then it is the right-most ``X-Forwarded-For`` entry that is not a trusted proxy (each
    proxy appends the address it saw, so only entries to the right of the first untrusted
    one can be believed). Everything else — the header from an untrusted peer, entries left
    of that one — is ignored: a client cannot choose the address it is limited by.
    """
    peer = request.remote or "unknown"
    auth = request.app[SERVICES].auth
    nets = auth.trusted_proxies if auth is not None else ()
    if not nets:
        return peer  # the common case: no proxy is trusted, nothing to parse
    ip = _address(peer)
    if ip is None or not any(ip in n for n in nets):
        return peer
    hops = [h.strip() for v in request.headers.getall("X-Forwarded-For", ()) for h in v.split(",") if h.strip()]
    for hop in reversed(hops):
        hop_ip = _address(hop)
        if hop_ip is None:
            return hop[:100]  # appended by a trusted proxy; not an address, but a stable key
        if not any(hop_ip in n for n in nets):
            return str(hop_ip)
    return str(_address(hops[0]) or peer) if hops else peer


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """(username, password) from an ``Authorization: Basic`` header, else None (absent or malformed)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):  # ValueError: non-ASCII in the header (was a 500)
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


async def password_login(auth: AuthService, request: web.Request, username: str, password: str) -> Identity | None:
    """The identity for these credentials, None when they are wrong; 429 while locked out."""
    if "\x00" in username or "\x00" in password:  # no principal has NUL in its name; bcrypt refuses it in a secret
        return None
    try:
        return await auth.login(username, password, client_address(request))
    except TooManyAttempts as e:
        raise APIError(
            "TOOMANYREQUESTS",
            "too many failed logins; retry later",
            headers={"Retry-After": str(max(1, int(e.retry_after)))},
        ) from None
