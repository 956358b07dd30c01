# Two commands on a fresh machine:  make demo  |  make test
# Both create .venv when missing and install the project with everything it needs.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.bone_seg-installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: demo test install lint clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/bone-demo

# the SLURM tests (tests/slurm/) run on a one-node cluster started for them and stopped afterwards
test: $(STAMP)
	$(BIN)/lint-imports
	scripts/with_slurm.sh $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check bone_seg tests benchmarks
	$(BIN)/lint-imports

clean:
	rm -rf bone_seg_out .pytest_cache
