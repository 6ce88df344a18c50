"""Wiring of token auth into the application (imported by registry.app when auth is enabled)."""
from __future__ import annotations

import logging

from aiohttp import web

from storage.principals import Principals

from ..services import Services
from . import token
from .guard import token_guard
from .service import ADMIN_USERNAME, AuthService

log = logging.getLogger("berth.auth")


def _ensure_service(svc: Services) -> AuthService:
    if svc.auth is None:
        svc.auth = AuthService(svc.config, Principals(svc.db))
    return svc.auth


def auth_middleware(svc: Services):
    """The /v2/ guard; also creates ``svc.auth`` (keys are loaded or generated here)."""
    _ensure_service(svc)
    return token_guard(lambda: svc.auth, svc.config.auth)


def add_auth_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/auth/token", token.get_token)
    r.add_post("/auth/token", token.post_token)
    r.add_get("/auth/jwks.json", token.jwks)


async def start_auth(svc: Services) -> None:
    """At start-up, after the schema exists: the signing keys (shared in the database), the bootstrap admin."""
    auth = _ensure_service(svc)
    await auth.keys.start()
    layout = getattr(svc, "layout", None)
    if layout is not None:
        layout.create()  # the SQLite database exists now: make it (and its WAL) private too
    created, generated = await auth.ensure_admin()
    if generated:
        print(
            f"berth: created admin user '{ADMIN_USERNAME}' with password {generated}\n"
            "berth: this password is shown only once; set BERTH_ADMIN_PASSWORD to choose it yourself",
            flush=True,
        )
    elif created:
        log.info("created admin user %r with the configured password (auth.admin_password, BERTH_ADMIN_PASSWORD)", ADMIN_USERNAME)
