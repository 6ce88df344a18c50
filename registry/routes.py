"""The one route table. Every endpoint's handler is one hop from here.

Repository names contain slashes, so ``{name}`` matches greedily up to the
resource's fixed suffix; the handler validates it against the spec's grammar
(anything else → NAME_INVALID, never a bare 404).
"""
from __future__ import annotations

from aiohttp import web

from .api import base, blobs, catalog, manifests, referrers, tags, uploads

NAME = r"{name:[\s\S]+}"  # any character, a newline too: such a name is NAME_INVALID, not an unknown route
DIGEST = r"{digest:[^/]+}"


def add_distribution_routes(app: web.Application) -> None:
    r = app.router
    r.add_get("/v2/", base.version_check)
    r.add_get("/v2/_catalog", catalog.list_repositories)
    r.add_get(f"/v2/{NAME}/tags/list", tags.list_tags)
    r.add_get(f"/v2/{NAME}/referrers/{DIGEST}", referrers.list_referrers)

    r.add_get(f"/v2/{NAME}/manifests/{{reference:[^/]+}}", manifests.get_manifest)  # + HEAD
    r.add_put(f"/v2/{NAME}/manifests/{{reference:[^/]+}}", manifests.put_manifest)
    r.add_delete(f"/v2/{NAME}/manifests/{{reference:[^/]+}}", manifests.delete_manifest)

    r.add_post(f"/v2/{NAME}/blobs/uploads/", uploads.start_upload)
    upload = f"/v2/{NAME}/blobs/uploads/{{upload_id:[^/]+}}"
    r.add_patch(upload, uploads.patch_upload)
    r.add_put(upload, uploads.finish_upload)
    r.add_get(upload, uploads.upload_status)
    r.add_delete(upload, uploads.cancel_upload)

    r.add_get(f"/v2/{NAME}/blobs/{DIGEST}", blobs.get_blob)  # + HEAD
    r.add_delete(f"/v2/{NAME}/blobs/{DIGEST}", blobs.delete_blob)


def add_admin_routes(app: web.Application) -> None:
    """The admin API (docs/auth.md); each handler authenticates (Basic or a registry:admin:* token)."""
    from .admin import audit, members, pull_secrets, robots, tenants, tokens, users  # noqa: PLC0415

    r = app.router
    tenant = "/admin/tenants/{tenant:[^/]+}"
    r.add_get("/admin/whoami", audit.whoami)
    r.add_post("/admin/tenants", tenants.create_tenant)
    r.add_get("/admin/tenants", tenants.list_tenants)
    r.add_get(tenant, tenants.get_tenant)
    r.add_patch(tenant, tenants.update_tenant)
    r.add_delete(tenant, tenants.delete_tenant)

    r.add_get(f"{tenant}/members", members.list_members)
    r.add_put(f"{tenant}/members/{{username:[^/]+}}", members.set_member)
    r.add_delete(f"{tenant}/members/{{username:[^/]+}}", members.remove_member)

    r.add_post(f"{tenant}/robots", robots.create_robot)
    r.add_get(f"{tenant}/robots", robots.list_robots)
    r.add_get(f"{tenant}/robots/{{robot:[^/]+}}", robots.get_robot)
    r.add_delete(f"{tenant}/robots/{{robot:[^/]+}}", robots.delete_robot)
    r.add_post(f"{tenant}/robots/{{robot:[^/]+}}/rotate", robots.rotate_robot)

    r.add_post(f"{tenant}/pull-secrets", pull_secrets.create_pull_secret)

    r.add_post("/admin/users", users.create_user)
    r.add_get("/admin/users", users.list_users)
    r.add_get("/admin/users/{username:[^/]+}", users.get_user)
    r.add_delete("/admin/users/{username:[^/]+}", users.delete_user)
    r.add_put("/admin/users/{username:[^/]+}/password", users.set_password)

    r.add_post("/admin/tokens", tokens.create_token)
    r.add_get("/admin/audit", audit.list_events)


def add_routes(app: web.Application) -> None:
    from .services import SERVICES  # noqa: PLC0415

    from . import health  # noqa: PLC0415

    add_distribution_routes(app)
    health.add_routes(app)  # /healthz, /readyz, /metrics: no authentication (docs/operations.md)
    if app[SERVICES].config.auth.enabled:  # the admin API needs authentication (registry.app sets it up)
        add_admin_routes(app)
