# Two commands for a fresh machine (see README.md):
#   make run   - create .venv if missing, install, run the whole workflow on config.yaml
#   make test  - create .venv if missing, install, run the test suite
PYTHON ?= python3
VENV   ?= .venv
CORES  ?= all
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.drs-installed

.PHONY: run test install lint clean check-report

# The workflow, then the HTML report of it, then where things are and the headline numbers.
# It recovers from a killed run by itself (docs/running.md: Recovering a killed run): first the lock a
# killed Snakemake left is removed, unless a Snakemake or a job of it still runs here
# (scripts/snakemake_recover.py; then it stops and says which), and --rerun-incomplete redoes
# the jobs the killed run had started. Both are no-ops after a run that ended normally.
run: $(STAMP)
	$(BIN)/python scripts/snakemake_recover.py -- $(BIN)/snakemake
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --cores $(CORES) --rerun-incomplete
	PATH="$(CURDIR)/$(BIN):$$PATH" snakemake --report results/report.html
	@echo
	@echo "Report:  $(CURDIR)/results/report.html (open it in a browser)"
	@echo "Summary: $(CURDIR)/results/summary.md"
	@$(BIN)/python -m drs report --headline results/summary.md

test: $(STAMP)
	$(BIN)/python -m pytest

install: $(STAMP)

# Re-install when the project metadata changes; the stamp records a finished install.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# Open results/report.html in headless Chromium (installed with apt-get when missing) and check
# that it draws; screenshots in results/report-screenshots/.
check-report: $(STAMP)
	$(BIN)/python scripts/check_report.py results/report.html --install

# The linters CI runs: ruff over the package, tests and scripts (configured in pyproject.toml),
# Snakemake's own lint and snakefmt over the workflow.
lint: $(STAMP)
	$(BIN)/ruff check drs tests scripts
	$(BIN)/ruff format --check drs tests scripts
	$(BIN)/snakemake --lint
	$(BIN)/snakefmt --check .

clean:
	rm -rf results/* .snakemake
	@touch results/.gitkeep
