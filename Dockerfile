# syntax=docker/dockerfile:1
# Layerscope image. CPU hosts:  docker build -t layerscope:cpu .
#                   GPU hosts:  docker build --build-arg TORCH_FLAVOR=cuda -t layerscope:cuda .
ARG BASE_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------- build: a virtual environment with every dependency
FROM ${BASE_IMAGE} AS build
ARG TORCH_FLAVOR=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# torch first: the largest layer, and the one that changes least. pip's default index serves everything else; the
# CPU flavour names only the CPU wheel index, as the extra one.
RUN if [ "$TORCH_FLAVOR" = "cuda" ]; then \
        pip install --no-cache-dir "torch==${TORCH_VERSION}"; \
    else \
        pip install --no-cache-dir "torch==${TORCH_VERSION}+cpu" --extra-index-url "${TORCH_CPU_INDEX}"; \
    fi
# Then every other dependency at the version in the lock file (make lock), so a rebuild next month is the same
# image. The lock pins the CPU torch; the CUDA flavour keeps the torch installed above.
COPY requirements.lock ./
RUN grep -v '^torch==' requirements.lock > deps.txt \
    && pip install --no-cache-dir --no-deps -r deps.txt \
    && pip check \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# ---------------------------------------------------------------- runtime: the venv and the code, no build tools
FROM ${BASE_IMAGE} AS runtime
RUN groupadd --gid 10001 layerscope \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin layerscope
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY app ./app
COPY models ./models
COPY static ./static
COPY templates ./templates
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    LAYERSCOPE_HOST=0.0.0.0 \
    LAYERSCOPE_PORT=8000 \
    LAYERSCOPE_WORKERS=1 \
    LAYERSCOPE_ENGINE_WORKERS=2 \
    LAYERSCOPE_DEVICE=auto \
    LAYERSCOPE_MEMORY_BUDGET_MB=2048
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python3", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/health', timeout=4).status != 200)"]
STOPSIGNAL SIGTERM
CMD ["python3", "-m", "app.cli", "serve"]
