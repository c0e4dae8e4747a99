# syntax=docker/dockerfile:1
# Build: docker build -t m365-smtp-exporter .
# Demo:  docker run --rm -p 9587:9587 m365-smtp-exporter demo
# Real:  docker run --rm -p 9587:9587 -v $PWD/config.yml:/etc/m365-smtp-exporter/config.yml:ro \
#            m365-smtp-exporter
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir --upgrade pip \
 && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
COPY --from=build /opt/venv /opt/venv
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin exporter \
 && mkdir -p /etc/m365-smtp-exporter /var/lib/m365-smtp-exporter \
 && chown exporter /var/lib/m365-smtp-exporter
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
USER 10001
EXPOSE 9587
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:9587/-/healthy', timeout=4).status == 200 else 1)"]
ENTRYPOINT ["m365-smtp-exporter"]
CMD ["run", "--config.file", "/etc/m365-smtp-exporter/config.yml"]
