# A real node beside the simulated ones (docs/cluster.md, "A real node"): the kubelet and
# kube-proxy from tests/node/go.mod (the control plane's Kubernetes release), with
# Debian's containerd, runc, CNI plugins and busybox-static.
TEST_PREREQS += realnode-prereqs realnode-build

.PHONY: realnode-prereqs realnode-build cluster-up-real

# containerd and runc come with docker.io (images-prereqs). Without apt, one line says
# so and the real-node tests skip (fail under CI=true).
realnode-prereqs:
	@if [[ -x /usr/lib/cni/bridge && -x /bin/busybox ]] && command -v containerd >/dev/null; then exit 0; fi; \
	if ! command -v apt-get >/dev/null; then \
	  echo "realnode-prereqs: skipped (no apt-get); install containerd, CNI plugins, busybox-static"; exit 0; \
	fi; \
	sudo=""; [[ $$(id -u) -eq 0 ]] || sudo="sudo"; \
	echo "realnode-prereqs: installing containerd, containernetworking-plugins, busybox-static"; \
	$$sudo apt-get update -qq; \
	DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq \
	  containerd runc containernetworking-plugins busybox-static iptables

realnode-build: cluster-build
	@if go=$$(tests/cluster/ensure-go.sh $(CLUSTER_GO_MIN)); then \
	  PATH="$$(dirname "$$go"):$$PATH" tests/node/build.sh $(CLUSTER_BIN); \
	else \
	  echo "realnode-build: skipped (no Go >= $(CLUSTER_GO_MIN))"; \
	fi

cluster-up-real: setup cluster-build realnode-build realnode-prereqs
	$(BIN)/icx dev cluster up --no-build --real-node
