# Two commands on a fresh machine:  make demo  |  make test
# Both create .venv when missing and install the project with everything it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bone_seg-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install lint bench clean pretrained

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev,napari]'
	@touch $(STAMP)

install: $(STAMP)

# afterwards: does the README's transcript show this run's figures? (a note if not; the demo's
# transcript is bone_seg_out/demo_transcript.log, scripts/readme_demo.py rewrites the README's)
demo: $(STAMP)
	$(BIN)/bone-demo
	-@$(BIN)/python scripts/readme_demo.py --check bone_seg_out/demo_transcript.log

# the pretrained starting model (model.net.weights=pretrained, bone-predict weights=pretrained):
# phantoms (conf/phantom_set/pretrain.yaml) -> their own store -> bone-fit experiment=pretrain,
# published to ${BONE_SEG_CACHE:-~/.cache/bone_seg}/pretrained/pretrained.safetensors. Sizes:
# make pretrained PRETRAIN_ARGS="trainer.max_epochs=2" PHANTOM_ARGS="phantom_set.shape=[32,128,128]"
# (COMMON_ARGS="paths.root=... threads=2", PRETRAINED_NAME=<name>: scripts/make_pretrained.sh)
pretrained: $(STAMP)
	BIN=$(BIN) scripts/make_pretrained.sh

# the SLURM tests (tests/slurm/) run on a one-node cluster started for them and stopped afterwards;
# the napari tests (tests/gui/) in a virtual X server (Xvfb) and the tracking-server tests against
# an MLflow server on PostgreSQL (scripts/with_services.sh), started and stopped likewise
# pytest in two processes (pytest-xdist), a module at a time each (tests/conftest.py: slow ones first)
TEST_WORKERS ?= 2
test: $(STAMP)
	$(BIN)/lint-imports
	scripts/with_services.sh scripts/with_xvfb.sh $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder --durations=25

# the benchmark suite at its 2-core sizes (~10 min); writes benchmarks/README.md and results.json
# (BENCH_ARGS="--threads 2 --only train_step" for a part)
bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py --quick $(BENCH_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check bone_seg tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf bone_seg_out .pytest_cache bench_logs
