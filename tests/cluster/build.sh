#!/usr/bin/env bash
# Builds the local control plane's binaries (etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl, kwok) from the modules pinned in
# go.mod into $1 (default .cache/cluster/bin). The build is skipped when a stamp keyed
# on go.mod, go.sum, this script and the Go version says the binaries are current, so a
# second run is a no-op; otherwise `go build` reuses Go's build cache
# (~/.cache/go-build) and module cache (~/go/pkg/mod), which survive between CI runs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$(mkdir -p "${1:-$here/../../.cache/cluster/bin}" && cd "${1:-$here/../../.cache/cluster/bin}" && pwd)

# No toolchain can be fetched here: use the machine's Go, which must be >= the go
# directive of go.mod (1.26.0).
export GOTOOLCHAIN=local
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok)

key=$(cat "$here/go.mod" "$here/go.sum" "$0" | sha256sum | cut -c1-16)-$(go env GOVERSION)
stamp="$out/.built-$key"
missing=0
for b in "${binaries[@]}"; do [[ -x "$out/$b" ]] || missing=1; done
[[ -f "$out/stages/pod-complete.yaml" ]] || missing=1
if [[ -f "$stamp" && $missing -eq 0 ]]; then
  echo "cluster-build: binaries in $out are current"
  exit 0
fi

k8s_version=$(cd "$here" && go list -m -f '{{.Version}}' k8s.io/kubernetes)
IFS=. read -r major minor _ <<<"${k8s_version#v}"
# The flags Kubernetes' own build sets, so `kubectl version` and /version tell the truth.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$k8s_version -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

cd "$here"
echo "cluster-build: building ${binaries[*]} (Kubernetes $k8s_version) into $out"
start=$SECONDS
go build -trimpath -ldflags "$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl \
  sigs.k8s.io/kwok/cmd/kwok
# etcd's main package is the root of its server module, so its default binary name is v3.
go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
# kwok's own Stage rules (nodes Ready with leases; pods Running/Ready; Job pods
# Succeeded; deleted pods gone), read by devcluster.py: taken from the pinned module
# rather than copied into this repository.
kwok_dir=$(go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
mkdir -p "$out/stages"
rm -f "$out"/stages/*.yaml
for stage in node/fast/node-initialize node/heartbeat-with-lease/node-heartbeat-with-lease \
  pod/fast/pod-ready pod/fast/pod-complete pod/fast/pod-delete; do
  install -m 0644 "$kwok_dir/kustomize/stage/$stage.yaml" "$out/stages/"
done
rm -f "$out"/.built-*
touch "$stamp"
echo "cluster-build: done in $((SECONDS - start)) s"
