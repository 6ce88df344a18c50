"""HTTP Basic credentials and the password login every entry point shares.

The /v2/ guard, the token realm and the admin API all log people in the same way:
through ``AuthService.login`` (bcrypt, the credential cache) and its failed-login
limiter, which answers 429 TOOMANYREQUESTS with ``Retry-After``.
"""
from __future__ import annotations

import base64
import binascii

from aiohttp import web

from ..errors import APIError
from .service import AuthService, Identity, TooManyAttempts


def client_address(request: web.Request) -> str:
    return request.remote or "unknown"


def basic_credentials(request: web.Request) -> tuple[str, str] | None:
    """(username, password) from an ``Authorization: Basic`` header, else None (absent or malformed)."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, sep, password = decoded.partition(":")
    return (username, password) if sep else None


async def password_login(auth: AuthService, request: web.Request, username: str, password: str) -> Identity | None:
    """The identity for these credentials, None when they are wrong; 429 while locked out."""
    try:
        return await auth.login(username, password, client_address(request))
    except TooManyAttempts as e:
        raise APIError(
            "TOOMANYREQUESTS",
            "too many failed logins; retry later",
            headers={"Retry-After": str(max(1, int(e.retry_after)))},
        ) from None
