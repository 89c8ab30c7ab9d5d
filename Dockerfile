# One image for the four services; the command picks the service, the same command `make up` runs:
#   docker run IMAGE routing.main --port 8080      (likewise sessions.main, presence.main, assist.main)
#   docker run IMAGE tools.cli provision --help    (the operator CLI ships in the image too)
# In Kubernetes the Deployments pass `<service>.main` and set <SERVICE>_HTTP_HOST/_HTTP_PORT.
# Build: docker build -t switchboard:0.1.0 .   Checked without a container engine: make image-check.

ARG PYTHON_IMAGE=python:3.11.14-slim-bookworm
ARG UV_IMAGE=ghcr.io/astral-sh/uv:0.13.9

FROM ${UV_IMAGE} AS uv

# --- build: resolve from the lock file, build the workspace's wheels, install them into /app/venv ---
FROM ${PYTHON_IMAGE} AS build
COPY --from=uv /uv /usr/local/bin/uv
ENV UV_PROJECT_ENVIRONMENT=/app/venv \
    UV_PYTHON_DOWNLOADS=never \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1
WORKDIR /src
# The third-party dependencies first (their own layer, rebuilt only when the lock file changes)...
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY services/routing/pyproject.toml services/routing/pyproject.toml
COPY services/sessions/pyproject.toml services/sessions/pyproject.toml
COPY services/presence/pyproject.toml services/presence/pyproject.toml
COPY services/assist/pyproject.toml services/assist/pyproject.toml
COPY tools/pyproject.toml tools/pyproject.toml
RUN uv sync --frozen --no-dev --no-editable --no-install-workspace
# ...then the workspace itself, installed as wheels (no editable links back into /src).
COPY shared shared
COPY services services
COPY tools tools
RUN uv sync --frozen --no-dev --no-editable

# --- runtime: the interpreter, the virtual environment and nothing else (no uv, no compilers) ---
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="switchboard" \
      org.opencontainers.image.description="Switchboard contact-centre engine: routing, sessions, presence, assist" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
RUN groupadd --system --gid 10001 switchboard \
 && useradd --system --uid 10001 --gid switchboard --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin switchboard
# Owned by root and read-only to the service: the image works with readOnlyRootFilesystem.
COPY --from=build --chown=root:root /app/venv /app/venv
COPY --chown=root:root deploy/demo /etc/switchboard/demo
ENV PATH=/app/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TMPDIR=/tmp \
    HF_HUB_OFFLINE=1 \
    LOG_FORMAT=json \
    ROUTING_HTTP_HOST=0.0.0.0 \
    SESSIONS_HTTP_HOST=0.0.0.0 \
    PRESENCE_HTTP_HOST=0.0.0.0 \
    ASSIST_HTTP_HOST=0.0.0.0 \
    ROUTING_HTTP_PORT=8080 \
    SESSIONS_HTTP_PORT=8080 \
    PRESENCE_HTTP_PORT=8080 \
    ASSIST_HTTP_PORT=8080
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
# No HEALTHCHECK: Kubernetes probes /health/live and /health/ready.
ENTRYPOINT ["python", "-m"]
CMD ["sessions.main"]
