"""Admin operations: one function per action, shared by the HTTP admin API and the CLI.

Every operation takes the :class:`Actor` doing it, checks what that actor may do,
changes the principals store, tells the auth service to forget what it cached about
the principals concerned (so revocations take effect at once), writes the audit log,
and returns plain JSON-able data. The HTTP handlers (``registry.admin.*``) and the
``berth`` CLI subcommands only translate requests and arguments into these calls.

Authorization model (docs/auth.md, "Admin API and Kubernetes onboarding"):

* an admin may do everything;
* a tenant owner may read and change their own tenants (members, robots, pull
  Secrets, the public flag, the tenant's audit events) and nothing else. Owners set roles
  only of users already in one of their tenants; anyone else (unknown or not) is 404
  alike, and a membership change affects that tenant's access only. Any request
  naming another tenant is refused with 403 DENIED whether that tenant exists or not,
  so owners cannot probe for other tenants' names;
* only admins create or delete tenants, create users and issue tokens;
* a service token (``POST /admin/tokens`` with ``registry:admin:*``) acts as an admin for
  tenants, robots, pull Secrets and every read, but never creates or changes people or
  credentials that outlive it: users, passwords, the admin flag, memberships and tokens
  are refused (403 DENIED), in one place: :func:`not_for_service_tokens`.
"""
from __future__ import annotations

import base64
import functools
import json
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from storage.catalog import Catalog
from storage.principals import ROBOT_ACTIONS, Principals, RobotRecord, TenantRecord
from storage.principals import ROLES as ROLE_ACTIONS

from ..auth.service import rfc3339 as auth_rfc3339
from ..config import Config
from ..errors import APIError

ROLES = tuple(ROLE_ACTIONS)  # reader, writer, owner: defined once, in storage.principals
MAX_AUDIT_LIMIT = 1000
_K8S_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?\Z")  # DNS subdomain (Secret name)
_K8S_NAMESPACE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")  # DNS label
_SERVER = re.compile(r"^(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?\Z")
_SUBJECT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:/+-]{0,127}\Z")


@dataclass(frozen=True)
class Actor:
    """Who is calling the admin API (or the CLI), from where."""

    name: str
    admin: bool = False
    owns: frozenset[str] = field(default_factory=frozenset)  # tenants this actor owns
    remote: str | None = None
    kind: str = "user"  # admin | user | service | cli

    def manages(self, tenant: str) -> bool:
        return self.admin or tenant in self.owns


def not_for_service_tokens(what: str):
    """Refuse an operation to service tokens (403 DENIED): the one list of what they may not do.

    Service tokens are bearer secrets that cannot be revoked on their own, so they may not
    create or change users, passwords, the admin flag, memberships or tokens: any of those
    would turn a short-lived token into lasting (or admin) access.
    """

    def decorate(fn):
        @functools.wraps(fn)
        async def guarded(self, actor: "Actor", *args, **kwargs):
            if actor.kind == "service":
                raise APIError("DENIED", f"service tokens cannot {what}", {"actor": actor.name})
            return await fn(self, actor, *args, **kwargs)

        guarded.refused_to_service_tokens = True
        return guarded

    return decorate


# the CLI acts as the local administrator: whoever can read the data directory owns the registry
CLI_ACTOR = Actor("admin", admin=True, remote="local (berth CLI)", kind="cli")


def invalid(message: str, detail: object | None = None) -> APIError:
    return APIError("INVALID_REQUEST", message, detail)


def rfc3339(ts: float | None) -> str | None:
    return None if ts is None else auth_rfc3339(ts)


# ---- input checks (the same for JSON bodies and CLI arguments) ------------------------------


def want_str(value: Any, what: str, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value:
        raise invalid(f"{what} must be a non-empty string")
    return value


def want_password(value: Any) -> str:
    value = want_str(value, "password")
    if len(value) < 8:
        raise invalid("password must have at least 8 characters")
    return value


def want_bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(f"{what} must be true or false")
    return value


MAX_SECONDS = 10 * 366 * 24 * 3600  # the longest expires_in accepted: about ten years


def want_seconds(value: Any, what: str, *, optional: bool = True) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SECONDS:
        raise invalid(f"{what} must be a whole number of seconds from 1 to {MAX_SECONDS}", {what: str(value)[:40]})
    return value


def want_str_list(value: Any, what: str, *, optional: bool = False) -> list[str] | None:
    if value is None and optional:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise invalid(f"{what} must be a list of non-empty strings")
    return value


# ---- record shapes ---------------------------------------------------------------------------


def tenant_json(t: TenantRecord) -> dict:
    return {"name": t.name, "public": t.public, "created_at": rfc3339(t.created_at), "quota_bytes": t.quota_bytes}


MAX_QUOTA = 2**63 - 1  # a BIGINT


def want_quota(value: Any) -> int | None:
    """A storage quota in bytes: a whole number from 0 (nothing may be pushed) or null (unlimited)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_QUOTA:
        raise invalid(f"quota_bytes must be null (unlimited) or a whole number of bytes from 0 to {MAX_QUOTA}",
                      {"quota_bytes": str(value)[:40]})
    return value


def robot_json(r: RobotRecord) -> dict:
    """A robot as listed: never its secret (only its bcrypt hash is stored anyway)."""
    return {
        "username": r.username,
        "tenant": r.tenant,
        "name": r.name,
        "actions": list(r.actions),
        "repositories": list(r.repositories) if r.repositories is not None else None,
        "expires_at": rfc3339(r.expires_at),
        "expired": r.expired(),
        "description": r.description,
        "created_at": rfc3339(r.created_at),
    }


def docker_config_json(server: str, tenant: str, username: str, secret: str) -> dict:
    """The ``.dockerconfigjson`` document: one ``auths`` entry keyed ``<server>/<tenant>``.

    Kubelet's credential keyring (and containers-image's auth.json) match keys by host
    and path prefix, so per-tenant keys let several tenants of one registry host be
    pulled side by side on a node (docs/auth.md explains the matching).
    """
    auth = base64.b64encode(f"{username}:{secret}".encode()).decode()
    return {"auths": {f"{server}/{tenant}": {"username": username, "password": secret, "auth": auth}}}


def k8s_secret(name: str, namespace: str, server: str, tenant: str, username: str, secret: str) -> dict:
    """A ready-to-apply ``kubernetes.io/dockerconfigjson`` Secret."""
    config = json.dumps(docker_config_json(server, tenant, username, secret), separators=(",", ":"))
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "berth"},
            "annotations": {"berth.io/tenant": tenant, "berth.io/robot": username, "berth.io/registry": server},
        },
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": base64.b64encode(config.encode()).decode()},
    }


def normalise_server(server: str) -> str:
    """``host[:port]`` for the auths key; a scheme is tolerated and dropped, a path is refused."""
    s = server.strip()
    for scheme in ("https://", "http://"):
        if s.lower().startswith(scheme):
            s = s[len(scheme):]
    s = s.rstrip("/")
    if not _SERVER.match(s):
        raise invalid(f"server must be host[:port] (no path), got {server!r}")
    return s


class AdminOps:
    """The admin operations over a principals store, the configuration and the auth service."""

    def __init__(self, principals: Principals, config: Config, auth: Any = None, catalog: Any = None) -> None:
        self.principals = principals
        self.config = config
        self.auth = auth  # registry.auth AuthService: forget(), issue_token(); None = nothing cached
        self.catalog = catalog

    # ---- helpers ---------------------------------------------------------------------------
    def _forget(self, *usernames: str) -> None:
        if self.auth is not None:
            for u in usernames:
                self.auth.forget(u)

    async def _audit(self, actor: Actor, action: str, *, tenant: str | None = None, target: str | None = None,
                     detail: dict | None = None, tenant_generation: str | None = None) -> None:
        detail = dict(detail or {})
        if actor.kind in ("service", "cli"):
            detail.setdefault("via", actor.kind)
        await self.principals.audit(actor.name, action, tenant=tenant, target=target, remote=actor.remote,
                                    detail=detail or None, tenant_generation=tenant_generation)

    @staticmethod
    def _admin_only(actor: Actor, what: str) -> None:
        if not actor.admin:
            raise APIError("DENIED", f"only administrators may {what}")

    async def _tenant(self, actor: Actor, tenant: str) -> TenantRecord:
        """The tenant when ``actor`` manages it: 403 for another tenant (existing or not), 404 for admins."""
        if not isinstance(tenant, str) or not tenant:
            raise invalid("tenant must be a non-empty string")
        if not actor.manages(tenant):
            raise APIError("DENIED", f"you do not own tenant {tenant!r}", {"tenant": tenant})
        t = await self.principals.get_tenant(tenant)
        if t is None:
            raise APIError("NAME_UNKNOWN", f"tenant {tenant!r} not found", {"tenant": tenant})
        return t

    # ---- tenants -----------------------------------------------------------------------------
    async def create_tenant(self, actor: Actor, name: Any, public: Any = False, quota_bytes: Any = None) -> dict:
        self._admin_only(actor, "create tenants")
        name = want_str(name, "name")
        public = want_bool(public, "public")
        quota_bytes = want_quota(quota_bytes)
        t = await self.principals.create_tenant(name, public, quota_bytes)
        await self._audit(actor, "tenant.create", tenant=t.name, target=t.name,
                          detail={"public": t.public, "quota_bytes": t.quota_bytes})
        return tenant_json(t)

    async def list_tenants(self, actor: Actor) -> list[dict]:
        tenants = await self.principals.list_tenants()
        return [tenant_json(t) for t in tenants if actor.manages(t.name)]

    async def get_tenant(self, actor: Actor, name: str) -> dict:
        t = await self._tenant(actor, name)
        out = tenant_json(t)
        out["usage_bytes"] = await Catalog(self.principals.db).tenant_usage(t.name)
        out["repositories"] = await self.principals.tenant_repository_count(t.name)
        out["members"] = await self.principals.members(t.name)
        out["robots"] = len(await self.principals.list_robots(t.name))
        return out

    async def set_tenant_public(self, actor: Actor, name: str, public: Any) -> dict:
        return await self.update_tenant(actor, name, {"public": public})

    async def update_tenant(self, actor: Actor, name: str, changes: dict) -> dict:
        """Change ``public`` (admins, owners) and/or ``quota_bytes`` (admins only: an owner
        cannot raise their own quota), all or nothing."""
        t = await self._tenant(actor, name)
        values = {}
        if "public" in changes:
            values["public"] = want_bool(changes["public"], "public")
        if "quota_bytes" in changes:
            self._admin_only(actor, "change a tenant's quota")
            values["quota_bytes"] = want_quota(changes["quota_bytes"])
        if not values:
            raise invalid('nothing to change: send {"public": true|false} and/or {"quota_bytes": N|null}')
        await self.principals.update_tenant(t.name, **values)
        await self._audit(actor, "tenant.update", tenant=t.name, target=t.name, detail=values)
        # anonymous pulls depend on the flag: make the auth service re-read the tenants at once
        self._forget(t.name)
        return tenant_json(await self.principals.get_tenant(t.name))

    async def delete_tenant(self, actor: Actor, name: str, force: bool = False) -> dict:
        """Delete a tenant with its memberships and robots.

        Refused with 409 while the tenant still has repositories, unless ``force``: then its
        repositories are deleted too (metadata at once, blobs with the next ``berth gc``),
        so that a tenant later created under the same name never inherits them.
        """
        self._admin_only(actor, "delete tenants")
        t = await self._tenant(actor, name)
        repos = await self.principals.tenant_repository_count(t.name)
        if repos and not force:
            raise APIError(
                "DENIED",
                f"tenant {t.name!r} still has {repos} repositories; delete them first or pass force",
                {"tenant": t.name, "repositories": repos},
                status=409,
            )
        members = list(await self.principals.members(t.name))
        robots = [r.username for r in await self.principals.list_robots(t.name)]
        await self.principals.delete_tenant(t.name, purge_repositories=bool(force))
        self._forget(t.name, *members, *robots)  # a tenant name also drops its robots and the tenant list
        await self._audit(actor, "tenant.delete", tenant=t.name, target=t.name, tenant_generation=t.generation,
                          detail={"repositories_deleted": repos, "members": members, "robots": robots})
        return {"deleted": t.name, "repositories_deleted": repos, "members_removed": members, "robots_deleted": robots}

    # ---- users -------------------------------------------------------------------------------
    @not_for_service_tokens("create users")
    async def create_user(self, actor: Actor, username: Any, password: Any, admin: Any = False) -> dict:
        self._admin_only(actor, "create users")
        username = want_str(username, "username")
        password = want_password(password)
        admin = want_bool(admin, "admin")
        u = await self.principals.create_user(username, password, is_admin=admin)
        await self._audit(actor, "user.create", target=u.username, detail={"admin": admin})
        return {"username": u.username, "admin": u.is_admin, "roles": {}}

    async def list_users(self, actor: Actor) -> list[dict]:
        self._admin_only(actor, "list users")
        return [{"username": u.username, "admin": u.is_admin, "roles": u.roles} for u in await self.principals.list_users()]

    async def get_user(self, actor: Actor, username: str) -> dict:
        self._admin_only(actor, "read users")
        u = await self.principals.get_user(username)
        if u is None:
            raise APIError("NAME_UNKNOWN", f"user {username!r} not found", {"username": username})
        return {"username": u.username, "admin": u.is_admin, "roles": u.roles}

    @not_for_service_tokens("change passwords")
    async def set_password(self, actor: Actor, username: str, password: Any) -> dict:
        self._admin_only(actor, "change passwords")
        password = want_password(password)
        await self.principals.set_password(username, password)  # bumps the user's version
        self._forget(username)
        await self._audit(actor, "user.password", target=username)
        return {"username": username, "password_changed": True}

    @not_for_service_tokens("delete users")
    async def delete_user(self, actor: Actor, username: str) -> dict:
        self._admin_only(actor, "delete users")
        if username == actor.name and actor.kind != "cli":
            raise APIError("DENIED", "you cannot delete yourself")
        u = await self.principals.get_user(username)
        if u is None:
            raise APIError("NAME_UNKNOWN", f"user {username!r} not found", {"username": username})
        await self.principals.delete_user(username)
        self._forget(username)
        await self._audit(actor, "user.delete", target=username, detail={"roles": u.roles} if u.roles else None)
        return {"deleted": username}

    # ---- memberships ---------------------------------------------------------------------------
    async def list_members(self, actor: Actor, tenant: str) -> list[dict]:
        t = await self._tenant(actor, tenant)
        return [{"username": u, "role": r} for u, r in (await self.principals.members(t.name)).items()]

    @not_for_service_tokens("change memberships")
    async def set_member(self, actor: Actor, tenant: str, username: str, role: Any) -> dict:
        t = await self._tenant(actor, tenant)
        role = want_str(role, "role")
        if role not in ROLES:
            raise invalid(f"role must be one of {', '.join(ROLES)}", {"role": role})
        user = await self.principals.get_user(username)
        if not actor.admin and (user is None or not set(user.roles) & actor.owns):
            # owners manage the people already in their tenants; an unknown user and a user of
            # other tenants get the same answer, so usernames cannot be probed
            raise APIError("NAME_UNKNOWN", f"{username!r} is not a member of a tenant you own; "
                           "an administrator adds new members", {"username": username})
        if user is None:
            raise APIError("NAME_UNKNOWN", f"user {username!r} not found", {"username": username})
        before = (await self.principals.members(t.name)).get(username)
        await self.principals.set_membership(t.name, username, role)
        self._forget(username)
        await self._audit(actor, "member.set", tenant=t.name, target=username, detail={"role": role, "previous": before})
        return {"tenant": t.name, "username": username, "role": role}

    @not_for_service_tokens("change memberships")
    async def remove_member(self, actor: Actor, tenant: str, username: str) -> dict:
        t = await self._tenant(actor, tenant)
        before = (await self.principals.members(t.name)).get(username)
        if before is None:
            raise APIError("NAME_UNKNOWN", f"{username!r} is not a member of {t.name!r}", {"username": username})
        await self.principals.remove_membership(t.name, username)  # bumps the user's version
        self._forget(username)
        await self._audit(actor, "member.remove", tenant=t.name, target=username, detail={"role": before})
        return {"tenant": t.name, "username": username, "removed": True}

    # ---- robots --------------------------------------------------------------------------------
    async def create_robot(self, actor: Actor, tenant: str, name: Any, actions: Any, repositories: Any = None,
                           expires_in: Any = None, description: Any = None) -> dict:
        """Create a robot; the answer holds its secret, which is never shown again."""
        t = await self._tenant(actor, tenant)
        name = want_str(name, "name")
        actions = want_str_list(actions, "actions")
        if not actions or any(a not in ROBOT_ACTIONS for a in actions):
            raise invalid(f"actions must be a non-empty list of {', '.join(ROBOT_ACTIONS)}", {"actions": actions})
        repositories = want_str_list(repositories, "repositories", optional=True)
        for glob in repositories or ():
            if glob.startswith("/") or ".." in glob.split("/") or glob.startswith(f"{t.name}/"):
                raise invalid(f"repository globs are relative to the tenant (e.g. 'app' or 'team/*'), got {glob!r}")
        expires_in = want_seconds(expires_in, "expires_in")
        description = want_str(description, "description", optional=True)
        expires_at = time.time() + expires_in if expires_in else None
        robot, secret = await self.principals.create_robot(t.name, name, actions, repositories, expires_at, description)
        self._forget(robot.username)
        await self._audit(actor, "robot.create", tenant=t.name, target=robot.username,
                          detail={"actions": list(robot.actions), "repositories": repositories, "expires_at": expires_at})
        return {**robot_json(robot), "secret": secret}

    async def list_robots(self, actor: Actor, tenant: str) -> list[dict]:
        t = await self._tenant(actor, tenant)
        return [robot_json(r) for r in await self.principals.list_robots(t.name)]

    async def get_robot(self, actor: Actor, tenant: str, name: str) -> dict:
        t = await self._tenant(actor, tenant)
        r = await self.principals.get_robot(f"{t.name}+{name}")
        if r is None:
            raise APIError("NAME_UNKNOWN", f"robot {name!r} not found in tenant {t.name!r}", {"robot": name})
        return robot_json(r)

    async def delete_robot(self, actor: Actor, tenant: str, name: str) -> dict:
        t = await self._tenant(actor, tenant)
        await self.principals.delete_robot(t.name, name)
        username = f"{t.name}+{name}"
        self._forget(username)
        await self._audit(actor, "robot.delete", tenant=t.name, target=username)
        return {"deleted": username}

    async def rotate_robot(self, actor: Actor, tenant: str, name: str) -> dict:
        t = await self._tenant(actor, tenant)
        robot, secret = await self.principals.rotate_robot(t.name, name)  # bumps the robot's version
        self._forget(robot.username)
        await self._audit(actor, "robot.rotate", tenant=t.name, target=robot.username)
        return {**robot_json(robot), "secret": secret}

    # ---- Kubernetes pull Secrets -----------------------------------------------------------------
    async def create_pull_secret(self, actor: Actor, tenant: str, namespace: Any, server: Any, name: Any = None,
                                 robot: Any = None, expires_in: Any = None) -> dict:
        """Create a pull-only robot and the ``kubernetes.io/dockerconfigjson`` Secret holding it.

        Returns ``{"secret": <Secret manifest>, "robot": <robot, without its secret>}``.
        """
        t = await self._tenant(actor, tenant)
        namespace = want_str(namespace, "namespace")
        if len(namespace) > 63 or not _K8S_NAMESPACE.match(namespace):
            raise invalid(f"namespace must be a Kubernetes namespace name (DNS label), got {namespace!r}")
        server = normalise_server(want_str(server, "server"))
        name = want_str(name, "name", optional=True) or f"berth-{t.name}".replace("_", "-")
        if len(name) > 253 or not _K8S_NAME.match(name):
            raise invalid(f"name must be a Kubernetes object name (DNS subdomain), got {name!r}")
        robot_name = want_str(robot, "robot", optional=True)
        if robot_name is None:
            ns = re.sub(r"-+", "-", namespace)[:48].strip("-")
            robot_name = f"k8s-{ns}-{secrets.token_hex(3)}"
        created = await self.create_robot(
            actor, t.name, robot_name, ["pull"], None, expires_in,
            f"Kubernetes pull Secret {namespace}/{name} for {server}",
        )
        secret = created.pop("secret")
        manifest = k8s_secret(name, namespace, server, t.name, created["username"], secret)
        await self._audit(actor, "pull-secret.create", tenant=t.name, target=f"{namespace}/{name}",
                          detail={"robot": created["username"], "server": server})
        return {"secret": manifest, "robot": created}

    # ---- tokens ------------------------------------------------------------------------------------
    @not_for_service_tokens("issue tokens")
    async def issue_token(self, actor: Actor, subject: Any, scope: Any, expires_in: Any = None) -> dict:
        """A signed registry token for a service (CI, a deployer…): exactly the access asked for.

        Admins only, and not with a service token (a token cannot mint longer-lived tokens).
        The TTL defaults to ``auth.token_ttl`` and is capped by ``auth.max_admin_token_ttl``.
        """
        self._admin_only(actor, "issue tokens")
        if self.auth is None:
            raise APIError("UNSUPPORTED", "token issuing needs auth enabled", status=400)
        subject = want_str(subject, "subject")
        if not _SUBJECT.match(subject):
            raise invalid("subject must be 1-128 characters: letters, digits and . _ @ : / + -")
        if isinstance(scope, str):
            scope = [scope]
        scope = want_str_list(scope, "scope")
        ttl_asked = want_seconds(expires_in, "expires_in")
        access = scopes_to_access(scope)
        cap = self.config.auth.max_admin_token_ttl
        ttl = min(ttl_asked or self.config.auth.token_ttl, cap)
        identity = await self.auth.service_identity(subject, access)  # bound to the tenants as they are now
        token = self.auth.issue_token(identity, access, ttl=ttl)
        await self._audit(actor, "token.issue", target=subject,
                          detail={"access": access, "expires_in": ttl, "requested_expires_in": ttl_asked})
        return {**token, "subject": subject, "access": access}

    # ---- audit ---------------------------------------------------------------------------------------
    async def _tenant_events(self, tenant: str, limit: int, before: int | None) -> list[dict]:
        """An owner's view: the events of the tenant as it exists now, never of an earlier tenant
        of the same name (its robots, namespaces, servers and client addresses are not theirs)."""
        t = await self.principals.get_tenant(tenant)
        if t is None:
            return []
        return await self.principals.audit_events(tenant, limit, before, generation=t.generation)

    async def audit_events(self, actor: Actor, tenant: str | None = None, limit: Any = 100, before: Any = None) -> list[dict]:
        """Newest first. Owners see only their tenants' events; ``before`` is an event id (paging)."""
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise invalid("limit must be a positive integer")
        limit = min(limit, MAX_AUDIT_LIMIT)
        if before is not None and (isinstance(before, bool) or not isinstance(before, int) or not 0 < before < 2**63):
            raise invalid("before must be a positive event id")
        if tenant and actor.admin:
            events = await self.principals.audit_events(tenant, limit, before)  # every incarnation of the name
        elif tenant:
            if not actor.manages(tenant):
                raise APIError("DENIED", f"you do not own tenant {tenant!r}", {"tenant": tenant})
            events = await self._tenant_events(tenant, limit, before)
        elif actor.admin:
            events = await self.principals.audit_events(None, limit, before)
        else:
            events = []
            for t in sorted(actor.owns):
                events.extend(await self._tenant_events(t, limit, before))
            events.sort(key=lambda e: e["id"], reverse=True)
            events = events[:limit]
        for e in events:
            e["at"] = rfc3339(e["at"])
        return events


# ---- glue with the token service (registry.auth) ------------------------------------------------


def scopes_to_access(values: list[str]) -> list[dict]:
    """``type[(class)]:name:actions`` strings → the token's ``access`` claim (malformed → 400)."""
    from ..auth.scopes import parse_scope, parse_scopes  # noqa: PLC0415

    for v in values:
        for part in v.split():
            if parse_scope(part) is None:
                raise invalid(f"malformed scope {part!r}: want type[(class)]:name:actions", {"scope": part})
    access = []
    for s in parse_scopes(values):
        if not s.actions:
            raise invalid(f"scope {s} names no action")
        access.append({"type": s.type, "name": s.name, "actions": list(s.actions)})
    if not access:
        raise invalid("scope must name at least one resource")
    return access
