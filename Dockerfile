# syntax=docker/dockerfile:1
# exmail-relay container image.
#
#   docker build -t exmail-relay .
#   docker run --read-only --tmpfs /tmp -v relay-journal:/var/lib/exmail-relay \
#     -v "$PWD/relay.toml:/etc/exmail-relay/relay.toml:ro" -p 8080:8080 exmail-relay
#
# Stage 1 builds the project wheel and wheels for every dependency; stage 2 installs
# them, offline, into a virtualenv on the slim runtime image. No compiler, no pip cache
# and no source tree reach the final image. tests/ship/test_image.py replays these steps
# without a Docker engine.
#
# The image carries the [otel] extra (OpenTelemetry tracing, docs/operations.md
# "Tracing"): it stays idle, nothing of it imported, until OTEL_ variables ask for
# traces. `docker build --build-arg EXTRAS= .` builds an image without it;
# EXTRAS is a comma-separated list of the project's extras.

ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm
ARG EXTRAS=otel

FROM ${PYTHON_IMAGE} AS build
ARG EXTRAS
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore
WORKDIR /src
# hatchling reads README.md for the package metadata, so it is part of the build context.
COPY pyproject.toml README.md ./
COPY relay ./relay
# The project's wheel and the wheels of its dependencies and of the extras in EXTRAS.
RUN pip wheel --wheel-dir /wheels ".${EXTRAS:+[$EXTRAS]}"

FROM ${PYTHON_IMAGE} AS runtime
ARG EXTRAS
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="exmail-relay" \
      org.opencontainers.image.description="Real-time mail and directory events out of Tencent Exmail, relayed to RabbitMQ and webhooks." \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.base.name="docker.io/library/python:3.12.8-slim-bookworm"

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    VIRTUAL_ENV=/opt/exmail-relay \
    PATH=/opt/exmail-relay/bin:$PATH

# The wheels are bind-mounted from the build stage, so they never land in a layer.
# pip compiles the bytecode here, at build time: at run time the root filesystem is
# read-only and PYTHONDONTWRITEBYTECODE keeps Python from trying to write any.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m venv "$VIRTUAL_ENV" \
    && "$VIRTUAL_ENV/bin/pip" install --no-index --find-links=/wheels \
       "exmail-relay${EXTRAS:+[$EXTRAS]}" \
    && "$VIRTUAL_ENV/bin/pip" uninstall --yes pip \
    && groupadd --system --gid 10001 relay \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
       --home-dir /nonexistent --shell /usr/sbin/nologin relay \
    && mkdir -p /etc/exmail-relay /var/lib/exmail-relay \
    && printf '%s\n' \
       '# Mount the real configuration over this file (see docs/configuration.md).' \
       '# Environment variables RELAY_<SECTION>__<KEY> override it.' \
       > /etc/exmail-relay/relay.toml \
    && chown 10001:10001 /var/lib/exmail-relay

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    RELAY_CONFIG=/etc/exmail-relay/relay.toml \
    RELAY_JOURNAL__PATH=/var/lib/exmail-relay/journal.sqlite3 \
    RELAY_HTTP__HOST=0.0.0.0

VOLUME ["/var/lib/exmail-relay"]
WORKDIR /var/lib/exmail-relay
USER 10001:10001
EXPOSE 8080

# No curl in the slim image: the standard library does the probe. It assumes the
# default [http] port 8080 and unprotected probes.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/livez', timeout=4)"]

ENTRYPOINT ["exmail-relay"]
CMD ["run"]
