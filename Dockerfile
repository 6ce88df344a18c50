# Berth container image. SQLite + blobs live in the /data volume.
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY registry ./registry
COPY storage ./storage
COPY config ./config
RUN pip install --no-cache-dir '.[postgres]' \
 && useradd --system --uid 10001 --home /data berth \
 && mkdir -p /data && chown berth /data
USER berth
VOLUME ["/data"]
EXPOSE 5000
ENV BERTH_DATA=/data BERTH_HOST=0.0.0.0 BERTH_PORT=5000
HEALTHCHECK CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:5000/healthz')"
ENTRYPOINT ["berth"]
CMD ["serve"]
