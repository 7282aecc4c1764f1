# A one-node SLURM cluster on this machine (munged, slurmctld, slurmd, slurmrestd with
# JWT), set up by our own Ansible roles through `icx provision` when it is not healthy.
# Fast (a few seconds) when it already is. See docs/slurm.md.
SLURM_INVENTORY ?= ansible/inventory/local.yml

.PHONY: slurm-cluster
slurm-cluster: setup
	@if $(PY) -m infinitecontext.slurm_bridge.health; then \
	  echo "slurm-cluster: healthy, nothing to do"; \
	else \
	  echo "slurm-cluster: applying the munge and slurm roles to localhost"; \
	  $(BIN)/icx provision slurm_cluster.yml -i $(SLURM_INVENTORY); \
	fi

TEST_PREREQS += slurm-cluster
