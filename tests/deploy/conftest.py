"""tests/deploy: the container image and the Kubernetes manifests.

Tests marked ``image`` build on `make image` (minutes: debootstrap, pip) and run the image with
podman; they are deselected unless ``-m`` names ``image`` (`make image-test`), so `make test`
runs only the static checks of the Dockerfile and the manifests."""
from __future__ import annotations


def pytest_collection_modifyitems(config, items):
    if "image" in (config.getoption("-m") or ""):
        return
    keep, drop = [], []
    for item in items:
        (drop if item.get_closest_marker("image") else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
