# syntax=docker/dockerfile:1
#
# Build:  docker build -t m365-smtp-exporter .
# Demo:   docker run --rm --read-only -p 9587:9587 \
#             --tmpfs /var/lib/m365-smtp-exporter:uid=10001,gid=10001 \
#             m365-smtp-exporter demo --web.listen-address :9587
# Real:   docker run --rm --read-only -p 9587:9587 \
#             --tmpfs /var/lib/m365-smtp-exporter:uid=10001,gid=10001 \
#             -v "$PWD/config.yml:/etc/m365-smtp-exporter/config.yml:ro" m365-smtp-exporter
#
# The image runs with a read-only root filesystem: its only writable path is
# /var/lib/m365-smtp-exporter (mount a volume or tmpfs there). Point the configuration's
# `state_file` into it, e.g. /var/lib/m365-smtp-exporter/state.json; TMPDIR also points there
# because `demo` writes its generated configuration and certificates to a temporary directory.
# The HEALTHCHECK assumes the default listen port 9587.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
# A self-contained virtual environment, byte-compiled at install time because the runtime
# image cannot write __pycache__.
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install '.[demo]' \
 && /opt/venv/bin/pip uninstall --yes pip

FROM ${PYTHON_IMAGE}
LABEL org.opencontainers.image.title="m365-smtp-exporter" \
      org.opencontainers.image.description="Prometheus exporter and throttling monitor for Microsoft 365 mail" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 exporter \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin exporter \
 && install -d -o root -g root -m 0755 /etc/m365-smtp-exporter \
 && install -d -o 10001 -g 10001 -m 0700 /var/lib/m365-smtp-exporter
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TMPDIR=/var/lib/m365-smtp-exporter
WORKDIR /var/lib/m365-smtp-exporter
USER 10001:10001
EXPOSE 9587
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9587/-/healthy', timeout=4).status != 200)"]
ENTRYPOINT ["m365-smtp-exporter"]
CMD ["run", "--config.file", "/etc/m365-smtp-exporter/config.yml"]
