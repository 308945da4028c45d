# syntax=docker/dockerfile:1
#
# trustwire operator image.
#
# NOTE: this Dockerfile has not been built where it was written (no Docker engine there);
# tests/test_dockerfile.py checks its text only. Build it with:
#   docker build -t ghcr.io/trustwire/trustwire:0.1.0 .
#
# Both stages use the same pinned base image: the virtualenv built in the first stage points
# at /usr/local/bin/python3.11, so the runtime stage must provide exactly that interpreter.
# Bump both FROM lines together (and add an @sha256 digest pin where your registry is
# reachable, e.g. with Renovate/Dependabot).

########## build stage: the virtualenv is assembled here ##########
FROM python:3.11.14-slim-bookworm AS builder

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /src
# The dependency set is the lock's, byte for byte: every line pinned and hashed, wheels only
# (no compiler in the image, none needed), so two builds of one commit install the same code.
# The lock carries the build backend too, so building the project fetches nothing unpinned.
# Regenerate it with the command in its header whenever pyproject.toml's dependencies change.
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --only-binary=:all: -r requirements.lock

COPY pyproject.toml setup.py README.md LICENSE ./
COPY operator/ operator/
COPY examples/ examples/
# A regular (non-editable) install: the venv is self-contained and /src is not needed later.
# --no-deps: everything it needs came from the lock above. pip byte-compiles the installed
# modules, so the read-only runtime never needs to write .pyc.
RUN pip install --no-cache-dir --no-deps --no-build-isolation . \
 && pip check \
 && trustwire --help >/dev/null

########## runtime stage ##########
FROM python:3.11.14-slim-bookworm

LABEL org.opencontainers.image.title="trustwire" \
      org.opencontainers.image.description="Kubernetes operator wiring mutual authentication (mTLS, JWT, shared secrets) between services" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"

ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

COPY --from=builder /opt/venv /opt/venv

# Numeric, non-root (the "nonroot" uid/gid of distroless images), so the kubelet can verify
# runAsNonRoot. The Helm chart pins no runAsUser: this user applies, unless the platform
# assigns another (OpenShift's restricted SCC does).
USER 65532:65532

# 8080: liveness (/healthz), 9090: Prometheus metrics.
EXPOSE 8080 9090

ENTRYPOINT ["trustwire"]
CMD ["run", "--all-namespaces"]
