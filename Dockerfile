# First draft of the production image (GPU). Weights are never baked in: mount the
# model store at /models (fill it with `python -m serve_app fetch-model ...`).
#   docker build -t multimodel-serve .
#   docker run --gpus all -p 8000:8000 -v $PWD/models:/models -v $PWD/data:/data multimodel-serve
FROM nvidia/cuda:13.0.1-cudnn-runtime-ubuntu24.04 AS base
ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends software-properties-common make curl \
    && add-apt-repository -y ppa:deadsnakes/ppa \
    && apt-get install -y --no-install-recommends python3.11 python3.11-venv \
    && python3.11 -m ensurepip \
    && rm -rf /var/lib/apt/lists/*

FROM base AS build
WORKDIR /app
COPY pyproject.toml requirements.lock Makefile ./
COPY serve_app serve_app
COPY deployments deployments
COPY pipelines pipelines
# The same install step as `make serve` / `make test`: one source of truth.
RUN make install PYTHON=python3.11

FROM base
RUN useradd --create-home --uid 1000 serve
WORKDIR /app
COPY --from=build --chown=serve /app /app
COPY --chown=serve configs configs
USER serve
ENV PATH=/app/.venv/bin:$PATH RAY_USAGE_STATS_ENABLED=0
VOLUME ["/models", "/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=600s CMD curl -fsS http://127.0.0.1:8000/health || exit 1
# `serve run` with the dashboard off and SIGTERM (docker stop) mapped to a clean Serve shutdown.
CMD ["python", "-m", "serve_app", "run", "configs/prod.yaml"]
