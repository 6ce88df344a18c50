"""The OCI distribution API, one module per resource (see registry.routes)."""
