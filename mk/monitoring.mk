# Prometheus and promtool (Debian's package) for the monitoring tests (docs/monitoring.md).
.PHONY: monitoring-tools
monitoring-tools:
	@command -v promtool >/dev/null && command -v prometheus >/dev/null || { \
	  sudo=""; [ "$$(id -u)" -eq 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends \
	    -o DPkg::Lock::Timeout=300 prometheus; }

TEST_PREREQS += monitoring-tools
