#!/usr/bin/env bash
# Starts Debian's dockerd when no daemon answers; idempotent.
#   scripts/dockerd.sh start   start it (its log and pidfile under .cache/docker/)
#   scripts/dockerd.sh stop    stop the daemon this script started, if any
# --iptables=false: this machine's root may not change the firewall, and builds use
# --network host (docs/images.md). Storage and cgroup driver are dockerd's defaults
# (overlay2, cgroupfs).
set -euo pipefail
state=${ICX_DOCKERD_STATE:-.cache/docker}
pidfile=$state/dockerd.pid
log=$state/dockerd.log

answers() { docker info >/dev/null 2>&1; }

start() {
  answers && return 0
  command -v dockerd >/dev/null \
    || { echo "dockerd.sh: no dockerd (make images-prereqs installs docker.io)" >&2; exit 1; }
  mkdir -p "$state"
  setsid dockerd --iptables=false --pidfile "$(realpath -m "$pidfile")" >"$log" 2>&1 </dev/null &
  for _ in $(seq 60); do
    answers && return 0
    sleep 1
  done
  echo "dockerd.sh: dockerd did not answer within 60 s; see $log" >&2
  tail -5 "$log" >&2
  exit 1
}

stop() {
  [[ -f $pidfile ]] || return 0
  local pid
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 30); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 1
  done
  rm -f "$pidfile"
}

case ${1:-start} in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
