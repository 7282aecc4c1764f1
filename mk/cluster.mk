# The local Kubernetes control plane (docs/cluster.md): built from the Go modules pinned
# in tests/cluster/go.mod, run by infinitecontext/devtools/cluster.py (`icx dev cluster`).
CLUSTER_BIN := .cache/cluster/bin
# go.mod's go directive; no newer toolchain can be downloaded here (GOTOOLCHAIN=local).
CLUSTER_GO_MIN := 1.26

TEST_PREREQS += cluster-build

.PHONY: cluster-build cluster-up cluster-down cluster-status

# Without a new enough Go the build is skipped, not failed: the cluster tests then skip
# with one line that says so (or use $KUBECONFIG's cluster). Under CI=true it fails: CI
# must not pass without the cluster tests (tests/plugins/prerequisites.py).
cluster-build:
	@if go=$$(tests/cluster/ensure-go.sh $(CLUSTER_GO_MIN)); then \
	  PATH="$$(dirname "$$go"):$$PATH" tests/cluster/build.sh $(CLUSTER_BIN); \
	elif [[ "$${CI:-}" == true ]]; then \
	  echo "cluster-build: no Go >= $(CLUSTER_GO_MIN), and CI=true needs the cluster tests" >&2; \
	  exit 1; \
	else \
	  echo "cluster-build: skipped (no Go >= $(CLUSTER_GO_MIN)); cluster tests need KUBECONFIG"; \
	fi

cluster-up: setup cluster-build
	$(BIN)/icx dev cluster up --no-build

cluster-down: setup
	$(BIN)/icx dev cluster down

cluster-status: setup
	$(BIN)/icx dev cluster status
