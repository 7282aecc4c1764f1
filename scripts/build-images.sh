#!/usr/bin/env bash
# Builds the Dockerfile's operator, trainer and server targets (docs/images.md), tagged
# REGISTRY/NAME:VERSION with the package's version from pyproject.toml.
#   scripts/build-images.sh [TARGET...]        default: operator trainer server
# Environment:
#   ICX_IMAGE_REGISTRY  tag prefix; default ghcr.io/infinitecontext (the CRD defaults)
#   ICX_IMAGE_BASE      the base image; default: scripts/build-base-image.sh's local one
#   ICX_ACCELERATOR     cpu (default: vLLM's CPU build) or cuda
#   ICX_EXTRA_CA        a PEM bundle pip trusts during the build (a TLS proxy's CA);
#                       off when empty, never stored in an image
# Without a container runtime it prints one line and exits 0 (1 under CI=true).
set -euo pipefail
cd "$(dirname "$0")/.."
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(operator trainer server)
registry=${ICX_IMAGE_REGISTRY:-ghcr.io/infinitecontext}
accelerator=${ICX_ACCELERATOR:-cpu}
version=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -1)

no_runtime() {
  echo "build-images: no container runtime ($1); images not built (docs/images.md)" >&2
  [[ ${CI:-} == true ]] && exit 1
  exit 0
}

command -v docker >/dev/null || no_runtime "no docker command"
if ! docker info >/dev/null 2>&1; then
  command -v dockerd >/dev/null || no_runtime "no docker daemon, and no dockerd to start"
  scripts/dockerd.sh start
fi

# BuildKit (cache and secret mounts): buildx where installed, else a CLI with BuildKit
# built in (Debian's docker.io 20.10 CLI, when a newer CLI without buildx comes first).
build=()
if docker buildx version >/dev/null 2>&1; then
  build=(docker buildx build --load)
else
  for cli in docker /usr/bin/docker; do
    if DOCKER_BUILDKIT=1 "$cli" build --help 2>/dev/null | grep -q -- '--secret'; then
      build=(env DOCKER_BUILDKIT=1 "$cli" build)
      break
    fi
  done
fi
[[ ${#build[@]} -gt 0 ]] || no_runtime "no docker CLI with BuildKit (install buildx)"

base=${ICX_IMAGE_BASE:-$(scripts/build-base-image.sh)}
args=(--network host --build-arg "BASE=$base" --build-arg "ACCELERATOR=$accelerator")
if [[ -n ${ICX_EXTRA_CA:-} ]]; then
  args+=(--secret "id=extra-ca,src=$ICX_EXTRA_CA")
fi
for target in "${targets[@]}"; do
  tag=$registry/$target:$version
  started=$SECONDS
  "${build[@]}" "${args[@]}" --target "$target" --tag "$tag" .
  echo "build-images: $tag ($accelerator, base $base) in $((SECONDS - started)) s" >&2
done
