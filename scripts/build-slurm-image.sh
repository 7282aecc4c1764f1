#!/usr/bin/env bash
# Builds the Slurm 24.11 test image (docs/slurm.md, "Versions"): a Debian trixie root
# filesystem from debootstrap, imported as infinitecontext/debian:trixie-<hash>, and
# tests/slurm_container/Dockerfile on top of it (slurmctld, slurmd, slurmrestd and munge
# from Debian's packages). No registry is needed. Rebuilt only when this script or
# tests/slurm_container/ changes; prints the image's name on stdout.
#   scripts/build-slurm-image.sh
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
context=$here/tests/slurm_container
script_hash=$(sha256sum "$0" | cut -c1-12)
image_hash=$(cat "$0" "$context"/* | sha256sum | cut -c1-12)
base=infinitecontext/debian:trixie-$script_hash
image=infinitecontext/slurm:24.11-$image_hash

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

# The Debian mirror this machine's apt uses (deb822 .sources first, then one-line lists).
mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" {print $2; exit}' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

if ! docker image inspect "$base" >/dev/null 2>&1; then
  rootfs=$(mktemp -d)
  trap 'rm -rf "$rootfs"' EXIT
  echo "build-slurm-image: debootstrap trixie from $(mirror)" >&2
  debootstrap --variant=minbase trixie "$rootfs" "$(mirror)" >&2
  echo "deb $(mirror) trixie main" >"$rootfs"/etc/apt/sources.list
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
    "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
  tar -C "$rootfs" -c . | docker import \
    --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$base" >&2
fi
echo "build-slurm-image: $image from $base" >&2
docker build --network host --build-arg "BASE=$base" -t "$image" "$context" >&2
echo "$image"
