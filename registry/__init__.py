"""Berth's HTTP service: the OCI distribution API, the token realm, the admin API, the CLI."""
__version__ = "0.1.0"
