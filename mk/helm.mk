# The Helm chart deploy/helm/infinitecontext (docs/install.md), and the Helm that
# tests/test_helm.py lints, templates and installs it with: built from the module pinned
# in tests/helm/go.mod into .cache/helm/bin, like the control plane's binaries.
HELM_BIN := .cache/helm/bin
# The chart's copies of files kept in deploy/monitoring/ (Helm reads only files inside
# the chart); tests/test_helm.py fails when they differ and `make helm-sync` copies them
# again. Its CRDs are written by `icx crds generate` with the others.
HELM_CHART := deploy/helm/infinitecontext

TEST_PREREQS += helm-build

.PHONY: helm-build helm-sync

# Without a new enough Go the build is skipped (tests/test_helm.py then skips with one
# line); under CI=true it fails, like cluster-build.
helm-build:
	@if go=$$(tests/cluster/ensure-go.sh $(CLUSTER_GO_MIN)); then \
	  PATH="$$(dirname "$$go"):$$PATH" tests/helm/build.sh $(HELM_BIN); \
	elif [[ "$${CI:-}" == true ]]; then \
	  echo "helm-build: no Go >= $(CLUSTER_GO_MIN), and CI=true needs the Helm tests" >&2; \
	  exit 1; \
	else \
	  echo "helm-build: skipped (no Go >= $(CLUSTER_GO_MIN)); the Helm tests will skip"; \
	fi

helm-sync:
	cp deploy/monitoring/prometheusrule.yaml deploy/monitoring/prometheus-adapter-rules.yaml \
	  $(HELM_CHART)/files/
	cp deploy/monitoring/dashboards/*.json $(HELM_CHART)/files/dashboards/
