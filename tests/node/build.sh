#!/usr/bin/env bash
# Builds the real node's binaries (kubelet, kube-proxy) from the modules pinned in this
# directory's go.mod (the control plane's Kubernetes release), into $1 (default
# .cache/cluster/bin), beside the control plane's. Skipped when a stamp keyed on go.mod,
# go.sum, this script and the Go version says they are current (its own stamp name:
# tests/cluster/build.sh removes only its .built-*).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-$here/../../.cache/cluster/bin}" && cd "${1:-$here/../../.cache/cluster/bin}" && pwd)

export GOTOOLCHAIN=local
binaries=(kubelet kube-proxy)

key=$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-16)-$(go env GOVERSION)
stamp="$out/.node-built-$key"
missing=0
for b in "${binaries[@]}"; do [[ -x "$out/$b" ]] || missing=1; done
if [[ -f "$stamp" && $missing -eq 0 ]]; then
  echo "node-build: binaries in $out are current"
  exit 0
fi

k8s_version=$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
IFS=. read -r major minor _ <<<"${k8s_version#v}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

cd "$here"
echo "node-build: building ${binaries[*]} (Kubernetes $k8s_version) into $out"
start=$SECONDS
go build -trimpath -ldflags "$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy
rm -f "$out"/.node-built-*
touch "$stamp"
echo "node-build: done in $((SECONDS - start)) s"
