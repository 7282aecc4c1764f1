# The quickstart (docs/quickstart.md): everything the lifecycle needs on this machine,
# then `icx demo up` runs TrainingRun → Alignment → Evaluation → InferenceService
# through the operator. `demo-down` stops every process the demo started.
DEMO_PRESET ?= small

.PHONY: demo-up demo-down demo-status

demo-up: setup cluster-build slurm-cluster server-prereqs
	$(BIN)/icx demo up --preset $(DEMO_PRESET)

demo-down: setup
	$(BIN)/icx demo down

demo-status: setup
	$(BIN)/icx demo status
