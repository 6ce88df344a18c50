"""The realm: ``GET|POST /auth/token`` (token.md, oauth.md) and ``GET /auth/jwks.json``.

GET: HTTP Basic (or nothing: an anonymous token), ``service``, repeated ``scope``,
``offline_token=true`` for a refresh token. POST: the OAuth2 form (``grant_type`` password
or refresh_token, ``username``, ``password``, ``refresh_token``, ``client_id``,
``service``, space-separated ``scope``, ``access_type=offline``), parameters taken from
the body (chunked or not) or the query string (podman).
"""
from __future__ import annotations

import json
from urllib.parse import parse_qsl

from aiohttp import web

from .. import metrics
from ..errors import APIError
from ..logs import PRINCIPAL
from ..services import SERVICES
from .credentials import basic_credentials, password_login
from .service import ANONYMOUS, AuthService, Identity, InvalidToken

MAX_FORM = 64 * 1024


def _auth(request: web.Request) -> AuthService:
    return request.app[SERVICES].auth


def _check_service(auth: AuthService, service: str | None) -> None:
    if service and service != auth.config.service:
        raise APIError("INVALID_REQUEST", f"unknown service {service!r}; this registry is {auth.config.service!r}")


async def _login(auth: AuthService, request: web.Request, username: str, password: str) -> Identity:
    identity = await password_login(auth, request, username, password)
    if identity is None:
        raise APIError("UNAUTHORIZED", "invalid username or password")
    return identity


_REFUSAL = {"UNAUTHORIZED": "unauthorized", "TOOMANYREQUESTS": "rate_limited"}


_issued: dict[str, object] = {}  # kind -> the berth_tokens_issued_total child, resolved at first use


def _count_issued(kind: str) -> None:
    child = _issued.get(kind)
    if child is None:
        child = _issued[kind] = metrics.TOKENS_ISSUED.labels(kind)
    child.inc()


def _counted(handler):
    """berth_tokens_issued_total{kind=access} / berth_tokens_refused_total{reason} around a realm handler
    (which counts its refresh tokens itself: looking for a flag on the request cost a KeyError a token)."""
    async def counted(request: web.Request) -> web.Response:
        try:
            resp = await handler(request)
        except APIError as e:
            metrics.TOKENS_REFUSED.labels(_REFUSAL.get(e.code, "invalid_request")).inc()
            raise
        _count_issued("access")
        return resp

    counted.__name__ = counted.__qualname__ = handler.__name__
    counted.__doc__ = handler.__doc__
    return counted


# the realm's values with nothing to escape in JSON: compact JWS (base64url and dots), RFC 3339 times
_PLAIN = frozenset({"token", "access_token", "refresh_token", "issued_at"})


def _json_response(body: dict) -> web.Response:
    """``web.json_response(body)`` (same bytes, same Content-Type) for the realm's flat answers,
    without the generic encoder: tokens and times (``_PLAIN``) and ints are written as they are,
    anything else (a scope text, a future field) goes through json."""
    parts = []
    for k, v in body.items():
        if k in _PLAIN and type(v) is str or type(v) is int:
            parts.append(f'"{k}": "{v}"' if type(v) is str else f'"{k}": {v}')
        else:
            parts.append(f'"{k}": {json.dumps(v)}')
    return web.Response(body=("{" + ", ".join(parts) + "}").encode(), content_type="application/json",
                        charset="utf-8")


def _scope_text(access: list[dict]) -> str:
    return " ".join(f"{e['type']}:{e['name']}:{','.join(e['actions'])}" for e in access)


@_counted
async def get_token(request: web.Request) -> web.Response:
    auth = _auth(request)
    q = request.query
    _check_service(auth, q.get("service"))
    creds = basic_credentials(request)
    if creds is None and request.headers.get("Authorization", "").lower().startswith("basic"):
        raise APIError("UNAUTHORIZED", "malformed Basic credentials")
    identity = ANONYMOUS
    if creds is not None and (creds[0] or creds[1]):
        identity = await _login(auth, request, *creds)
    request[PRINCIPAL] = identity.username or identity.kind
    access = await auth.grant(identity, q.getall("scope", []))
    body = auth.issue_token(identity, access)
    if q.get("offline_token", "").lower() == "true" and identity.authenticated:
        body["refresh_token"] = auth.issue_refresh_token(identity)
        _count_issued("refresh")
    return _json_response(body)


async def _form(request: web.Request) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for k, v in request.query.items():
        params.setdefault(k, []).append(v)
    chunks, size = [], 0
    async for chunk in request.content.iter_any():  # chunked or not; the form is small
        size += len(chunk)
        if size > MAX_FORM:
            raise APIError("SIZE_INVALID", "token request body too large", status=413)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if raw and request.content_type in ("application/x-www-form-urlencoded", "", "application/octet-stream", "text/plain"):
        body: dict[str, list[str]] = {}
        for k, v in parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True):
            body.setdefault(k, []).append(v)
        params.update(body)  # the body wins over the query string
    return params


@_counted
async def post_token(request: web.Request) -> web.Response:
    auth = _auth(request)
    p = await _form(request)

    def one(key: str) -> str:
        return (p.get(key) or [""])[-1]

    _check_service(auth, one("service"))
    grant_type = one("grant_type")
    offline = one("access_type") == "offline"
    if grant_type == "password":
        username, password = one("username"), one("password")
        if not username:
            creds = basic_credentials(request)
            if creds:
                username, password = creds
        if not username:
            raise APIError("UNAUTHORIZED", "username and password are required")
        identity = await _login(auth, request, username, password)
    elif grant_type == "refresh_token":
        refresh = one("refresh_token")
        if not refresh:
            raise APIError("INVALID_REQUEST", "refresh_token is required")
        try:
            identity = await auth.identity_from_refresh_token(refresh)
        except InvalidToken as e:
            raise APIError("UNAUTHORIZED", f"invalid refresh token: {e}") from None
    else:
        raise APIError("INVALID_REQUEST", f"unsupported grant_type {grant_type!r}")
    request[PRINCIPAL] = identity.username or identity.kind
    access = await auth.grant(identity, p.get("scope", []))
    body = auth.issue_token(identity, access)
    body["scope"] = _scope_text(access)
    if offline:
        body["refresh_token"] = auth.issue_refresh_token(identity)
        _count_issued("refresh")
    return _json_response(body)


async def jwks(request: web.Request) -> web.Response:
    return web.json_response(_auth(request).jwks(), headers={"Cache-Control": "max-age=300"})
