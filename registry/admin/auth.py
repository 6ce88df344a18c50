"""Who is calling the admin API: HTTP Basic (admin or tenant owner) or a realm token with
``registry:admin:*``; and the small request helpers every admin handler shares.

Basic credentials go through ``svc.auth.login`` so the credential cache and the
failed-login limiter (429) apply exactly as on the token endpoint.

Cross-site request forgery: a browser sends stored Basic credentials with any form post,
so every write (POST, PUT, PATCH, DELETE) is refused, before credentials are looked at,
when ``Sec-Fetch-Site`` says ``cross-site``/``same-site`` or an ``Origin`` other than this
server's own is given (403 DENIED), and when it carries a body that is not
``Content-Type: application/json`` (415 UNSUPPORTED): a plain HTML form cannot send that.
Bodies are capped at ``MAX_BODY`` bytes (413 SIZE_INVALID) and their JSON nesting depth
and number length too (``storage.jsonlimits``, 400 INVALID_REQUEST).
"""
from __future__ import annotations

import json

from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from storage import jsonlimits

from ..errors import APIError
from ..logs import PRINCIPAL
from ..services import SERVICES
from .operations import Actor, AdminOps, invalid

CHALLENGE = {"WWW-Authenticate": 'Basic realm="berth"'}
MAX_BODY = 64 * 1024  # bytes of a JSON request body
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_DEFAULT_PORTS = {"http": "80", "https": "443"}
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


def _origin_key(scheme: str, netloc: str) -> str:
    """``host[:port]`` in lower case, the scheme's default port left out."""
    netloc = netloc.lower()
    default = _DEFAULT_PORTS.get(scheme.lower())
    if default and netloc.endswith(f":{default}"):
        netloc = netloc[: -len(default) - 1]
    return netloc


def _own_origin(request: web.Request, origin: str) -> bool:
    """Whether an ``Origin`` header names this server: the Host the request came to (either scheme: a
    TLS-terminating proxy hides ours), or the configured realm's origin (scheme included)."""
    try:
        o = urlsplit(origin)
    except ValueError:
        return False
    if o.scheme not in _DEFAULT_PORTS or not o.netloc or o.path or o.query:
        return False  # "null", opaque or malformed origins are never our own
    mine = {_origin_key(o.scheme, request.host or "")}
    realm = request.app[SERVICES].config.auth.realm
    if realm:
        r = urlsplit(realm)
        if r.scheme == o.scheme:
            mine.add(_origin_key(r.scheme, r.netloc))
    return _origin_key(o.scheme, o.netloc) in mine


def refuse_forgery(request: web.Request) -> None:
    """403 DENIED for a cross-site write, 415 UNSUPPORTED for a write whose body is not JSON."""
    if request.method not in UNSAFE_METHODS:
        return
    site = request.headers.get("Sec-Fetch-Site", "").strip().lower()
    if site in ("cross-site", "same-site"):
        raise APIError("DENIED", "cross-site requests to the admin API are refused", {"Sec-Fetch-Site": site})
    origin = request.headers.get("Origin")
    if origin is not None and not _own_origin(request, origin.strip()):
        raise APIError("DENIED", "requests from another origin to the admin API are refused", {"Origin": origin})
    if request.body_exists and request.content_type != "application/json":
        raise APIError("UNSUPPORTED", "admin request bodies must be sent with Content-Type: application/json",
                       {"Content-Type": request.headers.get("Content-Type")}, status=415)


async def authenticate(request: web.Request) -> Actor:
    """The request's actor, or 401 UNAUTHORIZED / 403 DENIED / 415 UNSUPPORTED / 429 TOOMANYREQUESTS."""
    cached = request.get(ACTOR_KEY)
    if cached is not None:
        return cached
    refuse_forgery(request)  # before credentials: a forged request never reaches a login either
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
    request[PRINCIPAL] = actor.name  # for the access log
    return actor


async def context(request: web.Request) -> tuple[AdminOps, Actor]:
    """(operations, actor) for a handler: authenticates first."""
    actor = await authenticate(request)
    svc = request.app[SERVICES]
    return AdminOps(svc.auth.principals, svc.config, svc.auth, svc.catalog), actor


async def _read_capped(request: web.Request) -> bytes:
    """The whole body, at most MAX_BODY bytes (413 SIZE_INVALID beyond, whether announced or chunked)."""
    too_big = APIError("SIZE_INVALID", f"admin request bodies are limited to {MAX_BODY} bytes",
                       {"limit": MAX_BODY}, status=413)
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise too_big
    chunks, size = [], 0
    async for chunk in request.content.iter_any():
        size += len(chunk)
        if size > MAX_BODY:
            raise too_big
        chunks.append(chunk)
    return b"".join(chunks)


async def body(request: web.Request, *allowed: str) -> dict:
    """The JSON object body; unknown members are refused so typos do not pass silently."""
    raw = await _read_capped(request)
    if not raw.strip():
        data: Any = {}
    else:
        try:
            data = jsonlimits.loads(raw)
        except jsonlimits.JSONTooComplex as e:
            raise invalid(f"the request body is refused: {e}") from None
        except (ValueError, UnicodeDecodeError):
            raise invalid("the request body must be a JSON object") from None
    if not isinstance(data, dict):
        raise invalid("the request body must be a JSON object")
    try:  # a "\udcff" escape decodes to a lone surrogate, which no store or hash can encode (was a 500)
        json.dumps(data, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise invalid("the request body holds a string that is not valid Unicode (a lone surrogate)") from None
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise invalid(f"unknown field(s): {', '.join(unknown)}; expected {', '.join(allowed)}", {"unknown": unknown})
    return data


def query_int(request: web.Request, key: str, default: int | None) -> int | None:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    try:
        if len(raw) > 19:  # no database integer is longer; int() of 5,000 digits is an error too
            raise ValueError(raw)
        return int(raw)
    except ValueError:
        raise invalid(f"{key} must be an integer, got {raw[:40]!r}") from None


def query_bool(request: web.Request, key: str) -> bool:
    raw = request.query.get(key, "").lower()
    if raw in ("", "0", "false", "no", "off"):
        return False
    if raw in ("1", "true", "yes", "on"):
        return True
    raise invalid(f"{key} must be true or false, got {raw!r}")


def reply(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status, headers={"Cache-Control": "no-store"})
