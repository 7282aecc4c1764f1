# Trainer image (docs/trainer.md): SFT, DPO and evaluation on the tiny CPU recipe, and the
# GPU benchmark. Nothing here runs before pytest: the tests start what they need.
TRAINER_RUN := runs/tiny-cpu

.PHONY: trainer-tiny trainer-bench

# SFT on 2 CPU ranks (gloo, FSDP2), then the passkey grid of the exported model.
trainer-tiny: setup
	$(BIN)/icx train sft --config recipes/tiny-cpu.yaml --output-dir $(TRAINER_RUN) --nproc-per-node 2
	$(BIN)/icx eval passkey --model $(TRAINER_RUN)/model --out $(TRAINER_RUN)/eval \
	  --lengths 128,256 --depths 0,0.5,1 --trials 4

# On a GPU machine: throughput vs transformers and the passkey study (BENCHMARKS.md).
trainer-bench: setup
	$(PY) -m infinitecontext.trainer.gpu_benchmark --out runs/bench
