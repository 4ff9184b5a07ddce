# The order service: the guest built from source, then a slim Python image running as a non-root
# user, with the Python packages at the releases requirements.lock names. Two variants:
#   docker build .                                  Python 3.10: wasmer and wasmtime (WASM_ENGINE=auto
#                                                   picks wasmer, the engine the original demo ran on)
#   docker build --build-arg PYTHON_VERSION=3.12 .  a supported Python (3.10 reached its end of
#                                                   life in October 2026), wasmtime only, since
#                                                   wasmer 1.1.0 has no wheels past 3.10
ARG PYTHON_VERSION=3.10

# --- 1. the guest: Rust -> wasm32-unknown-unknown -> asyncify ------------------------------
FROM rust:1-slim-bookworm AS guest
RUN rustup target add wasm32-unknown-unknown
WORKDIR /src
COPY scripts/setup-system scripts/setup-system
# The same script CI uses; with rustup's wasm32 target present it installs only binaryen.
RUN apt-get update -qq && scripts/setup-system --guest && apt-get install -y -qq --no-install-recommends python3 && rm -rf /var/lib/apt/lists/*
COPY guest guest
RUN guest/build.sh

# --- 2. the service -------------------------------------------------------------------------
FROM python:${PYTHON_VERSION}-slim-bookworm
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY pyproject.toml README.md requirements.lock ./
COPY service service
COPY sql sql
COPY static static
COPY --from=guest /src/service/guest/ service/guest/
RUN pip install -c requirements.lock . && useradd --system --uid 10001 --home-dir /app app && mkdir -p /app/.data && chown app /app/.data
USER app
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8080"]
