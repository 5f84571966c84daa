# Two commands for a fresh machine (see README):
#   make run   - create .venv if missing, install, run the whole workflow on config.yaml
#   make test  - create .venv if missing, install, run the test suite
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= all
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.drs-installed

.PHONY: run test install lint clean

run: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --cores $(CORES)

test: $(STAMP)
	$(BIN)/python -m pytest

install: $(STAMP)

# Re-install when the project metadata changes; the stamp records a finished install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

lint: $(STAMP)
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .

clean:
	rm -rf results/* .snakemake
	@touch results/.gitkeep
