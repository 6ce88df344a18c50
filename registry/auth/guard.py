"""The /v2/ guard: which scope a request needs, and whether the caller has it."""
from __future__ import annotations

import re

from aiohttp import web

from .. import names
from ..errors import APIError
from ..limits import IDENTITY_KEY
from ..logs import PRINCIPAL
from . import FULL_ACCESS, Access
from .scopes import challenge_scope

ACCESS_KEY: web.RequestKey[Access] = web.RequestKey("access", Access)


# The action a route needs, from the route that matched (never from the path text: a
# repository may be named ``acme/blobs/uploads/x`` or ``acme/manifests/tags/list``).
# GET and HEAD pull; every other method pushes, except these DELETE routes, which delete.
# Keyed by the route's canonical pattern, so a handler renamed or moved keeps its action.
_DELETE_ROUTES = frozenset({
    "/v2/{name}/manifests/{reference}",
    "/v2/{name}/blobs/{digest}",
})


def _route_pattern(request: web.Request) -> str:
    """The canonical pattern of the route that matched (``""`` for no route: 404, 405)."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else ""


def required_scope(request: web.Request) -> tuple[str, str, str] | None:
    """(type, name, action) the request needs, or None for the /v2/ base and non-API paths."""
    pattern = _route_pattern(request)
    if not pattern.startswith("/v2/"):
        return None
    if pattern == "/v2/_catalog":
        return ("registry", "catalog", "*")
    name = request.match_info.get("name")
    if name is None:
        return None
    method = request.method
    if method in ("GET", "HEAD"):
        action = "pull"
    elif method == "DELETE" and pattern in _DELETE_ROUTES:
        action = "delete"
    else:
        action = "push"
    return ("repository", name, action)


@web.middleware
async def open_guard(request: web.Request, handler):
    """Auth disabled: every request may do everything."""
    request[ACCESS_KEY] = FULL_ACCESS
    return await handler(request)


# ---- auth enabled: registry tokens (and HTTP Basic) --------------------------------


# a DNS name or IPv4 address (letters, digits, '.', '-', '_') or an IP literal, and an optional
# port: the hosts a registry is reached by (RFC 3986 allows more in a reg-name, none in use)
_HOST = re.compile(r"^(?:\[[0-9A-Za-z:.%]+\]|[A-Za-z0-9._-]+)(?::[0-9]{1,5})?\Z")


def realm_url(request: web.Request, realm: str | None) -> str:
    """The configured realm, else this server's own token endpoint as the client reached it.

    The Host header is echoed into the challenge only when it is a valid host[:port]
    (RFC 9112 §3.2: a request with an invalid Host is answered 400)."""
    if realm:
        return realm
    host = request.host
    if not _HOST.match(host):
        raise APIError("INVALID_REQUEST", "invalid Host header", {"host": host})
    return f"{request.scheme}://{host}/auth/token"


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')


def challenge(request: web.Request, auth_config, scope: tuple[str, str, str] | None, error: str | None = None,
              message: str | None = None):
    """The 401 UNAUTHORIZED APIError carrying a Bearer challenge for ``scope``."""
    parts = [f'realm="{_quote(realm_url(request, auth_config.realm))}"', f'service="{_quote(auth_config.service)}"']
    detail = None
    if scope is not None:
        s = challenge_scope(*scope)
        parts.append(f'scope="{_quote(s)}"')
        actions = s.rsplit(":", 1)[1]
        detail = [{"Type": scope[0], "Class": "", "Name": scope[1], "Action": a} for a in actions.split(",")]
    if error:
        parts.append(f'error="{error}"')
    return APIError(
        "UNAUTHORIZED",
        message,
        detail,
        headers={"WWW-Authenticate": "Bearer " + ",".join(parts)},
    )


def token_guard(get_auth, auth_config):
    """The /v2/ middleware when auth is enabled.

    ``get_auth()`` returns the AuthService (created at start-up). Every /v2/ request needs
    a valid registry token (``Authorization: Bearer``) or HTTP Basic credentials (same
    login path and rate limit as the realm). The request's scope must be granted by the
    token; ``request[ACCESS_KEY]`` then answers further questions (cross-repository mount
    sources from the token; the catalog from the caller's identity).
    """
    from .credentials import basic_credentials, password_login
    from .service import AccessList, InvalidToken

    @web.middleware
    async def guard(request: web.Request, handler):
        if not request.path.startswith("/v2/"):
            return await handler(request)
        auth = get_auth()
        scope = required_scope(request)
        if scope is not None and scope[0] == "repository":
            # the name goes into the challenge header: only a name of the spec's grammar
            # (anything else, NUL/CR/LF included, is 400 NAME_INVALID, as without auth)
            names.repository(scope[1])
        scheme, _, value = request.headers.get("Authorization", "").partition(" ")
        scheme = scheme.lower()
        if scheme == "bearer" and value.strip():
            try:
                identity, granted = await auth.identity_from_token(value.strip())
            except InvalidToken as e:
                raise challenge(request, auth_config, scope, "invalid_token", f"invalid token: {e}") from None
            access = AccessList(granted)
        elif scheme == "basic":
            creds = basic_credentials(request)
            identity = await password_login(auth, request, *creds) if creds is not None else None
            if identity is None:
                raise challenge(request, auth_config, scope, None, "invalid username or password")
            access = await auth.identity_access(identity, *(scope[:2] if scope is not None else ()))
        else:
            raise challenge(request, auth_config, scope)

        if scope is not None:
            rtype, name, action = scope
            ok = access.has(rtype, name, action) if rtype != "repository" else access.allows(name, action)
            if not ok:
                raise challenge(request, auth_config, scope, "insufficient_scope",
                                "the token does not grant this action")
            if rtype == "registry" and name == "catalog":
                access = await auth.identity_access(identity)  # list what the caller may pull
        request[ACCESS_KEY] = access
        request[IDENTITY_KEY] = identity  # whom registry.limits counts the request against
        request[PRINCIPAL] = identity.username or identity.kind  # for the access log
        return await handler(request)

    return guard
