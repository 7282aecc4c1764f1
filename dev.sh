#!/usr/bin/env bash
# The one entry point of the README: `./dev.sh demo` runs the main job, `./dev.sh test`
# runs the tests (`./dev.sh test-fast`: the quick lane without services). On a fresh Debian machine it first installs the few system packages
# that the Makefile needs, then hands over to make.
set -euo pipefail
cd "$(dirname "$0")"

need=()
command -v make >/dev/null || need+=(make)
command -v git >/dev/null || need+=(git)
command -v curl >/dev/null || need+=(curl)
command -v python3 >/dev/null || need+=(python3)
python3 -c "import ensurepip, venv" 2>/dev/null || need+=(python3-venv)
if ((${#need[@]})); then
  sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  echo "dev.sh: installing system packages: ${need[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
fi

exec make --no-print-directory "${@:-help}"
