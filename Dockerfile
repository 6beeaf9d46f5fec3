# The production image (GPU). Weights and state are never baked in: mount the model store at /models
# (filled with `python -m serve_app fetch-model ... --store /models`) and a writable volume at /data.
#   docker build -t multimodel-serve:0.1.0 .
#   docker run --gpus all -p 8000:8000 -v /srv/models:/models:ro -v ms-data:/data \
#     -e SERVE_API_KEY=... -e QDRANT_URL=http://qdrant-host:6333 --stop-timeout 150 multimodel-serve:0.1.0
# The same image runs every Ray pod of deploy/kuberay/rayservice.yaml (KubeRay replaces the command).
#
# CUDA: torch 2.13 / vLLM 0.32 in requirements.lock are CUDA 13.0 builds that bring their own CUDA user-space
# libraries as wheels (nvidia-cuda-runtime 13.0, nvidia-cublas 13.1, nvidia-cudnn-cu13 9.x ...). So the base
# only has to carry the driver-facing layer and NVIDIA_REQUIRE_CUDA=cuda>=13.0, which makes the NVIDIA
# container runtime refuse a host whose driver is too old for those wheels, at `docker run`, not mid-request.
ARG CUDA_IMAGE=nvidia/cuda:13.0.1-base-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
# Ubuntu 24.04 has no Python 3.11: uv installs a managed CPython 3.11 under /opt/python (VENV_PYTHON=3.11),
# which the runtime stage copies to the same path, so the venv's interpreter links stay valid.
# The distribution's python3 only bootstraps uv (`pip install --target .tools/uv`, outside any environment).
ENV DEBIAN_FRONTEND=noninteractive \
    UV_PYTHON_INSTALL_DIR=/opt/python \
    UV_PYTHON_PREFERENCE=only-managed \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    PIP_BREAK_SYSTEM_PACKAGES=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends make python3 python3-pip ca-certificates \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml requirements.lock Makefile README.md ./
COPY serve_app serve_app
COPY deployments deployments
COPY pipelines pipelines
# The same install step as `make serve` / `make test`: one source of truth for what gets installed.
# Bytecode is compiled now because the app's files are read-only for the user the image runs as.
RUN --mount=type=cache,target=/root/.cache/uv \
    make install PYTHON=python3 VENV_PYTHON=3.11 \
    && rm -rf .tools

FROM ${CUDA_IMAGE} AS runtime
# gcc/g++: Triton (vLLM's torch.compile) and FlashInfer build small launchers with the host compiler at run time.
# libcublas-12-9 (NVIDIA's apt repository, configured in the CUDA base): CTranslate2 4.8 (faster-whisper, the
#   ASR) is a CUDA 12 build that dlopens libcublas.so.12; nothing in the CUDA 13 wheels provides it.
# wget: the HEALTHCHECK below and the probes KubeRay injects. tini: PID 1 that forwards SIGTERM to the CMD
#   and reaps the processes Ray leaves behind.
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends gcc g++ wget tini libcublas-12-9 \
    && rm -rf /var/lib/apt/lists/* \
    && echo /usr/local/cuda-12.9/targets/x86_64-linux/lib > /etc/ld.so.conf.d/zz-cublas-12.conf \
    && ldconfig
# Ubuntu 24.04 images ship a user `ubuntu` with uid 1000: give the uid (KubeRay's runAsUser) to `serve`.
RUN if id -u ubuntu >/dev/null 2>&1; then userdel --remove ubuntu; fi \
    && useradd --create-home --uid 1000 --user-group serve \
    && mkdir -p /models /data \
    && chown serve:serve /data
COPY --from=build /opt/python /opt/python
# Owned by root, read-only for the service user: the running app cannot change its own code.
COPY --from=build /app /app
COPY configs /app/configs
COPY scripts /app/scripts
# KubeRay starts `ray start` from a login shell (`bash -lc`): keep the venv first on that PATH too.
RUN echo 'export PATH=/app/.venv/bin:$PATH' > /etc/profile.d/multimodel-serve.sh
WORKDIR /app
ENV PATH=/app/.venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    RAY_USAGE_STATS_ENABLED=0 \
    RAY_worker_niceness=0 \
    RAY_SERVE_USE_GRPC_BY_DEFAULT=1 \
    RAY_SERVE_REPLICA_GRPC_MAX_MESSAGE_LENGTH=2147483647 \
    RAY_SERVE_ENABLE_HA_PROXY=1 \
    RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S=2 \
    RAY_SERVE_PROXY_READY_CHECK_TIMEOUT_S=30 \
    MODEL_STORE=/models
USER serve
VOLUME ["/models", "/data"]
# 8000: the HTTP API; 9464: Ray's metrics exporter (SERVE_METRICS_PORT), what Prometheus scrapes.
EXPOSE 8000 9464
# Liveness of the HTTP ingress (open without the API key). The start period covers loading real weights.
HEALTHCHECK --interval=30s --timeout=5s --start-period=900s --retries=3 \
    CMD ["wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8000/health"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# Exec form: `docker stop`'s SIGTERM reaches this process, which maps it to Serve's clean shutdown
# (give it --stop-timeout / stop_grace_period above the deployments' graceful_shutdown_timeout_s).
CMD ["python", "-m", "serve_app", "run", "configs/prod.yaml"]
