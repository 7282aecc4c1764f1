# syntax=docker/dockerfile:1.7
# One Dockerfile, three images:
#   docker build --target operator -t infinitecontext/operator .
#   docker build --target trainer  -t infinitecontext/trainer .
#   docker build --target server   -t infinitecontext/server .
# Every pip install uses requirements/constraints.txt, the versions CI tests.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG VLLM_IMAGE=vllm/vllm-openai:v0.33.0

# --- source: the package, without the test suite -----------------------------------
FROM ${PYTHON_IMAGE} AS source
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY infinitecontext/ infinitecontext/
COPY operator/ operator/
COPY crds/ crds/
COPY model/ model/
COPY kernels/ kernels/
COPY trainer_image/ trainer_image/
COPY server_image/ server_image/
COPY slurm_bridge/ slurm_bridge/

# --- operator: kopf, the Kubernetes client and MLflow's client; no torch ------------
FROM ${PYTHON_IMAGE} AS operator
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=source /src /src
RUN pip install --no-cache-dir -c /src/requirements/constraints.txt "/src[operator]" \
    && rm -rf /src \
    && useradd --uid 10001 --no-create-home --shell /usr/sbin/nologin icx
USER 10001
ENTRYPOINT ["icx"]
CMD ["operator", "run"]

# --- trainer: torch (CUDA wheels), transformers, TRL, MLflow ------------------------
FROM ${PYTHON_IMAGE} AS trainer
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
COPY --from=source /src /src
RUN pip install --no-cache-dir -c /src/requirements/constraints.txt "/src[train]" \
    && rm -rf /src \
    && useradd --uid 10001 --create-home --shell /usr/sbin/nologin icx
USER 10001
WORKDIR /home/icx
ENTRYPOINT ["icx"]
CMD ["train", "--help"]

# --- server: vLLM's GPU image plus our entrypoint -----------------------------------
# `icx serve MODEL` resolves MODEL through MLflow (MLFLOW_TRACKING_URI), verifies it into
# ICX_MODEL_CACHE (mount a volume there), then execs vLLM's OpenAI server on port 8000:
# /health (liveness), /ready (readiness), /metrics, /v1/*. docs/server.md.
FROM ${VLLM_IMAGE} AS server
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 ICX_MODEL_CACHE=/var/cache/icx-models
COPY --from=source /src /src
# vLLM's image brings its own torch and vllm; add only our package and the serve extra
# (pip's default only-if-needed strategy leaves the image's packages as they are).
RUN pip install --no-cache-dir "/src[serve]" && rm -rf /src && mkdir -p /var/cache/icx-models
EXPOSE 8000
ENTRYPOINT ["icx", "serve"]
