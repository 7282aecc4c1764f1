#!/usr/bin/env bash
# Builds the local base image of the Dockerfile's three targets (docs/images.md):
# Debian 12 (debootstrap --variant=minbase) with python3, venv and pip, imported as
# infinitecontext/base:bookworm-<hash of this script>. No registry is needed, so it
# works where `FROM python:3.11-slim-bookworm` cannot be pulled. Rebuilt only when this
# script changes; prints the image's name on stdout.
#   scripts/build-base-image.sh
set -euo pipefail
script_hash=$(sha256sum "$0" | cut -c1-12)
image=infinitecontext/base:bookworm-$script_hash

if docker image inspect "$image" >/dev/null 2>&1; then
  echo "$image"
  exit 0
fi

# The Debian mirror this machine's apt uses (deb822 .sources first, then one-line lists).
mirror() {
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
  [[ -n $uri ]] || uri=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' \
    /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

rootfs=$(mktemp -d)
trap 'rm -rf "$rootfs"' EXIT
echo "build-base-image: debootstrap bookworm from $(mirror)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
  bookworm "$rootfs" "$(mirror)" >&2
# What a container image does not need: apt's lists and caches, docs, man pages.
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
  "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/*
tar -C "$rootfs" -c . | docker import \
  --change 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'CMD ["/bin/bash"]' - "$image" >&2
echo "$image"
