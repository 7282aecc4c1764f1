#!/usr/bin/env bash
# Builds Helm from the module pinned in go.mod into $1 (default .cache/helm/bin). Like
# tests/cluster/build.sh: skipped when a stamp keyed on go.mod, go.sum, this script and
# the Go version says the binary is current; otherwise `go build` reuses Go's build and
# module caches.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-$here/../../.cache/helm/bin}" && cd "${1:-$here/../../.cache/helm/bin}" && pwd)

# No toolchain can be fetched here: use the machine's Go (>= go.mod's go directive).
export GOTOOLCHAIN=local

key=$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-16)-$(go env GOVERSION)
stamp="$out/.built-$key"
if [[ -f "$stamp" && -x "$out/helm" ]]; then
  echo "helm-build: $out/helm is current"
  exit 0
fi

cd "$here"
helm_version=$(go list -m -f '{{.Version}}' helm.sh/helm/v3)
echo "helm-build: building helm $helm_version into $out"
start=$SECONDS
# The flag Helm's own Makefile sets, so `helm version` tells the truth.
go build -trimpath -ldflags "-s -w -X helm.sh/helm/v3/internal/version.version=$helm_version" \
  -o "$out/helm" helm.sh/helm/v3/cmd/helm
rm -f "$out"/.built-*
touch "$stamp"
echo "helm-build: done in $((SECONDS - start)) s"
