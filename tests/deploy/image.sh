#!/usr/bin/env bash
# Build the Berth container image without a Docker engine and without a registry base image.
#
#   tests/deploy/image.sh base    debootstrap Debian bookworm (minbase + python3), import it
#                                 (cached: once), add the host's extra CAs → localhost/berth-base:bookworm
#   tests/deploy/image.sh build   buildah bud the Dockerfile on that base → localhost/berth:dev
#   tests/deploy/image.sh env     print the environment the podman/buildah calls use (eval it)
#
# Everything lives in one private containers-storage (vfs driver, as tests/e2e does) under
# $BERTH_IMAGE_DIR (default /var/tmp/berth-image), so `make image` and `make image-test` share
# it and nothing touches the host's /var/lib/containers. Needs root, debootstrap, buildah.
# With a registry at hand, skip all this: `docker build .` / `buildah bud .` use
# python:3.11-slim (the Dockerfile's default BASE).
set -euo pipefail
cd "$(dirname "$0")/../.."
DIR=${BERTH_IMAGE_DIR:-/var/tmp/berth-image}
ROOTFS_IMAGE=localhost/berth-rootfs:bookworm
BASE_IMAGE=${BERTH_BASE_IMAGE:-localhost/berth-base:bookworm}
IMAGE=${BERTH_IMAGE:-localhost/berth:dev}

mkdir -p "$DIR/storage" "$DIR/run"
cat > "$DIR/storage.conf" <<CONF
[storage]
driver = "vfs"
graphroot = "$DIR/storage"
runroot = "$DIR/run"
CONF
# runc, and limits no higher than this host's: crun refuses hybrid cgroups, and raising
# RLIMIT_NOFILE/NPROC (what podman does as root by default) is not permitted in every sandbox
cat > "$DIR/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=4096:4096", "nproc=4096:4096"]
[engine]
events_logger = "none"
cgroup_manager = "cgroupfs"
runtime = "runc"
CONF
[ -f "$DIR/auth.json" ] || echo '{"auths":{}}' > "$DIR/auth.json"
export CONTAINERS_STORAGE_CONF="$DIR/storage.conf" CONTAINERS_CONF="$DIR/containers.conf" \
       REGISTRY_AUTH_FILE="$DIR/auth.json" BUILDAH_ISOLATION=chroot

base() {
    if ! command -v debootstrap >/dev/null; then
        [ "$(id -u)" -eq 0 ] || { echo "image.sh: install debootstrap (as root: apt-get install debootstrap)" >&2; exit 1; }
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
    fi
    # 1. Debian bookworm, minbase + python3, imported once as $ROOTFS_IMAGE (minutes: downloads)
    if ! buildah inspect --type image "$ROOTFS_IMAGE" >/dev/null 2>&1; then
        local root="$DIR/rootfs"
        rm -rf "$root"
        # python3-venv brings ensurepip (pip) into the build stage; ca-certificates for https to S3
        debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
            bookworm "$root" ${DEBIAN_MIRROR:-}   # DEBIAN_MIRROR: a mirror URL, else debootstrap's default
        rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
               "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/locale/*
        tar -C "$root" --numeric-owner -cf "$DIR/rootfs.tar" .
        podman import --change 'CMD=["/bin/bash"]' "$DIR/rootfs.tar" "$ROOTFS_IMAGE" >/dev/null
        rm -rf "$root" "$DIR/rootfs.tar"
        echo "image.sh: imported $ROOTFS_IMAGE"
    fi
    # 2. $BASE_IMAGE: that, trusting the CAs this host adds (/usr/local/share/ca-certificates), so
    #    the build stage's pip gets through a TLS-inspecting proxy the host trusts (seconds)
    local c
    c=$(buildah from --pull-never "$ROOTFS_IMAGE")
    if compgen -G '/usr/local/share/ca-certificates/*.crt' >/dev/null; then
        buildah copy "$c" /usr/local/share/ca-certificates/ /usr/local/share/ca-certificates/ >/dev/null
        buildah run --network host "$c" -- update-ca-certificates >/dev/null
    fi
    buildah commit --rm "$c" "$BASE_IMAGE" >/dev/null
    echo "image.sh: $BASE_IMAGE ready"
}

build() {
    # --format docker keeps HEALTHCHECK (the OCI image config has no field for it);
    # --network host: the build stage pip-installs from PyPI
    buildah bud --format docker --network host --layers=false \
        --build-arg BASE="$BASE_IMAGE" -t "$IMAGE" -f Dockerfile .
}

case "${1:-}" in
    base) base ;;
    build) base; build ;;
    env) echo "export CONTAINERS_STORAGE_CONF='$CONTAINERS_STORAGE_CONF' CONTAINERS_CONF='$CONTAINERS_CONF'" \
              "REGISTRY_AUTH_FILE='$REGISTRY_AUTH_FILE' BUILDAH_ISOLATION=chroot" ;;
    *) echo "usage: $0 base|build|env" >&2; exit 2 ;;
esac
