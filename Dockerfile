# Berth container image: `berth serve` as a non-root user, configured from the environment
# (BERTH_* variables, config/berth.yaml lists them), data (SQLite database, blobs, upload
# sessions) in the /data volume. The root filesystem may be mounted read-only: Berth writes only
# under $BERTH_DATA (/data); give it a writable /tmp as well (docs/kubernetes.md).
#
#   docker build -t berth .                    # or: buildah bud --format docker -t berth .
#   docker run -p 5000:5000 -v berth-data:/data -e BERTH_ADMIN_PASSWORD=… berth
#
# BASE is any image with Python ≥ 3.11 as `python3` and useradd (Debian-like). Without a registry
# to pull python:3.11-slim from, `make image` builds a Debian bookworm base with debootstrap
# and passes it as --build-arg BASE=localhost/berth-base:bookworm (tests/deploy/image.sh).
ARG BASE=python:3.11-slim

# --- build: a virtual environment with Berth and its dependencies (PostgreSQL driver included)
FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
RUN python3 -m venv /opt/berth
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY storage ./storage
RUN /opt/berth/bin/pip install --no-compile '.[postgres]' \
 && /opt/berth/bin/pip uninstall -y pip \
 && /opt/berth/bin/python3 -m compileall -q /opt/berth/lib

# --- run: the same base, the virtual environment, a non-root user and nothing else
FROM ${BASE}
RUN useradd --system --uid 10001 --user-group --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin berth \
 && mkdir -p /data \
 && chown 10001:10001 /data \
 && chmod 0700 /data
COPY --from=build /opt/berth /opt/berth
ENV PATH=/opt/berth/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    BERTH_DATA=/data \
    BERTH_HOST=0.0.0.0 \
    BERTH_PORT=5000
USER 10001:10001
WORKDIR /data
VOLUME ["/data"]
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python3", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('BERTH_PORT', '5000'), timeout=4)"]
ENTRYPOINT ["berth"]
CMD ["serve"]
