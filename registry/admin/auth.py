"""Who is calling the admin API: HTTP Basic (admin or tenant owner) or a realm token with
``registry:admin:*``; and the small request helpers every admin handler shares.

Basic credentials go through ``svc.auth.login`` so the credential cache and the
failed-login limiter (429) apply exactly as on the token endpoint.
"""
from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from ..errors import APIError
from ..services import SERVICES
from .operations import Actor, AdminOps, invalid

CHALLENGE = {"WWW-Authenticate": 'Basic realm="berth"'}
ACTOR_KEY: web.RequestKey[Actor] = web.RequestKey("admin_actor", Actor)


def unauthorized(message: str = "authentication required") -> APIError:
    return APIError("UNAUTHORIZED", message, headers=dict(CHALLENGE))


def _grants_admin(access: list[dict]) -> bool:
    for a in access or ():
        if a.get("type") == "registry" and a.get("name") == "admin" and "*" in (a.get("actions") or ()):
            return True
    return False


def actor_from_identity(identity: Any, remote: str | None, *, via_token: bool = False) -> Actor:
    """The admin-API actor for an authenticated identity (403 when it may not use the API)."""
    kind = getattr(identity, "kind", None)
    name = getattr(identity, "username", None) or kind or "?"
    if kind == "admin":
        return Actor(name, admin=True, remote=remote, kind="admin")
    if kind == "service" and via_token:  # a token an admin issued with registry:admin:*
        # audited as "service:<subject>" so it never passes for the user of the same name
        return Actor(f"service:{name}", admin=True, remote=remote, kind="service")
    if kind == "user":
        roles = getattr(identity, "roles", None) or {}
        owns = frozenset(t for t, r in dict(roles).items() if r == "owner")
        if owns:
            return Actor(name, owns=owns, remote=remote, kind="user")
        raise APIError("DENIED", "the admin API is for administrators and tenant owners")
    if kind == "robot":
        raise APIError("DENIED", "robot accounts cannot use the admin API")
    raise unauthorized()


async def authenticate(request: web.Request) -> Actor:
    """The request's actor, or 401 UNAUTHORIZED / 403 DENIED / 429 TOOMANYREQUESTS."""
    cached = request.get(ACTOR_KEY)
    if cached is not None:
        return cached
    svc = request.app[SERVICES]
    if svc.auth is None:  # pragma: no cover - admin routes are only added with auth enabled
        raise APIError("UNSUPPORTED", "the admin API needs auth enabled", status=404)
    from ..auth.credentials import basic_credentials, client_address, password_login  # noqa: PLC0415
    from ..auth.service import InvalidToken  # noqa: PLC0415

    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    credentials = credentials.strip()
    remote = client_address(request)
    if scheme == "basic" and credentials:
        creds = basic_credentials(request)
        if creds is None or not creds[0]:
            raise unauthorized("malformed Basic credentials")
        identity = await password_login(svc.auth, request, *creds)
        if identity is None:
            raise unauthorized("invalid username or password")
        actor = actor_from_identity(identity, remote)
    elif scheme == "bearer" and credentials:
        try:
            identity, access = await svc.auth.identity_from_token(credentials)
        except InvalidToken:
            raise unauthorized("invalid or expired token") from None
        if not _grants_admin(access):
            raise APIError("DENIED", "the token does not grant registry:admin:*")
        actor = actor_from_identity(identity, remote, via_token=True)
    else:
        raise unauthorized()
    request[ACTOR_KEY] = actor
    return actor


async def context(request: web.Request) -> tuple[AdminOps, Actor]:
    """(operations, actor) for a handler: authenticates first."""
    actor = await authenticate(request)
    svc = request.app[SERVICES]
    return AdminOps(svc.auth.principals, svc.config, svc.auth, svc.catalog), actor


async def body(request: web.Request, *allowed: str) -> dict:
    """The JSON object body; unknown members are refused so typos do not pass silently."""
    raw = await request.read()
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise invalid("the request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise invalid("the request body must be a JSON object")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(unknown)}; expected {', '.join(allowed)}", {"unknown": unknown})
    return data


def query_int(request: web.Request, key: str, default: int | None) -> int | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise invalid(f"{key} must be an integer, got {raw!r}") from None


def query_bool(request: web.Request, key: str) -> bool:
    raw = request.query.get(key, "").lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise invalid(f"{key} must be true or false, got {raw!r}")


def reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})
