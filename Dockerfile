# Loist (Music Library MCP): the one image for every environment.
# Build:  docker build -t loist .
# Run:    docker run -p 8080:8080 loist            (embedded default: SQLite + local folder)
# Config comes only from environment variables at run time (docs/configuration.md); this image
# contains no secret and no .env file (.dockerignore keeps them out).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: install the package and its dependencies into a self-contained venv ------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/loist
ENV PATH=/opt/loist/bin:$PATH
WORKDIR /src
# Dependencies change less often than code: they come first, for the build cache. They install
# only from the lock, each file checked against its sha256 (--require-hashes), so a dependency
# cannot change under a rebuild; setuptools and wheel (from the lock too) then build Loist itself
# with no further download. Regenerate the lock: see docs/security.md.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --no-deps -r requirements.lock
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
    && pip check \
    && python -c "import loist, loist.config"

# --- runtime: slim base + ffmpeg + the venv, as a non-root user ------------------------------------
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.0.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="loist" \
      org.opencontainers.image.description="Music library server for AI assistants (Music Library MCP): ingest, catalogue, search, stream and embed audio" \
      org.opencontainers.image.source="https://github.com/loist/loist" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

# ffmpeg decodes and analyses audio. Debian point releases replace package versions, so pinning an
# exact version would break rebuilds; the base image tag pins the distribution instead.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 loist \
    && useradd --system --uid 10001 --gid loist --home-dir /var/lib/loist --create-home --shell /usr/sbin/nologin loist

COPY --from=build /opt/loist /opt/loist
ENV PATH=/opt/loist/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PORT=8080 \
    LOIST_DATA_DIR=/var/lib/loist/data

WORKDIR /var/lib/loist
USER 10001:10001
EXPOSE 8080

# Liveness only (process up): readiness (database, storage) is the orchestrator's business.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/health/live' % os.environ.get('PORT', '8080'), timeout=4).status == 200 else 1)"]

# Shell form only to expand PORT (Cloud Run sets it); exec hands PID 1 to loist for clean SIGTERM.
CMD ["sh", "-c", "exec loist serve --transport http --host 0.0.0.0 --port \"${PORT}\""]
