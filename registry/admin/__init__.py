"""The admin API (``/admin/…``): tenants, users, memberships, robots, Kubernetes pull
Secrets, service tokens and the audit log. Handlers live one module per resource and
translate HTTP into :mod:`registry.admin.operations`, which the CLI calls too.
"""
