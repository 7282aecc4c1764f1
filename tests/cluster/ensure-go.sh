#!/usr/bin/env bash
# Prints the path of a Go toolchain new enough for go.mod (>= $1), installing Debian's
# golang-go first when no Go is on PATH or in /usr/local/go and apt offers a version that
# is new enough. Exits 1 with a reason when there is none: no toolchain can be
# downloaded here, so GOTOOLCHAIN=local is the only mode.
set -euo pipefail
min=${1:?minimum Go version}
export PATH="$PATH:/usr/local/go/bin" GOTOOLCHAIN=local

newer_or_equal() { [[ "$(printf '%s\n%s\n' "$min" "$1" | sort -V | head -1)" == "$min" ]]; }

if ! command -v go >/dev/null; then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo=sudo
  $sudo apt-get update -qq
  candidate=$(apt-cache policy golang-go | awk '/Candidate:/ {print $2}' | sed -E 's/^[0-9]+://; s/~.*//')
  if [[ -n $candidate && $candidate != "(none)" ]] && newer_or_equal "$candidate"; then
    echo "ensure-go: installing golang-go $candidate from apt" >&2
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq golang-go >&2
  else
    echo "ensure-go: no Go on this machine and apt offers golang-go ${candidate:-none}, older than $min" >&2
    exit 1
  fi
fi
have=$(go env GOVERSION | sed 's/^go//')
if ! newer_or_equal "$have"; then
  echo "ensure-go: Go $have is older than $min, which tests/cluster/go.mod needs" >&2
  exit 1
fi
command -v go
