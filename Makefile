# cranialkit — the two commands of the README are `make notebooks` (main job) and `make test` (tests).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: setup notebooks test unit lint lab bench bench-report clean

setup: $(STAMP)

# torch is installed first, pinned, so that no other requirement can pull a CUDA build.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install torch==2.13.0
	$(BIN)/pip install -e ".[dev]"
	touch $(STAMP)

# Main job: execute every notebook headless at default parameters on the phantom data, write outputs/index.html.
notebooks: setup
	PYVISTA_OFF_SCREEN=true $(BIN)/cranialkit run-notebooks --out outputs

# Tests: unit tests + every notebook in smoke mode.
test: setup
	PYVISTA_OFF_SCREEN=true $(BIN)/python -m pytest -q -ra

unit: setup
	$(BIN)/python -m pytest -q -ra -m "not notebook"

lint: setup
	$(BIN)/ruff check cranialkit tests benchmarks data_scripts dev solutions

lab: setup
	$(BIN)/pip install -e ".[lab]"
	$(BIN)/jupyter lab notebooks

# Benchmarks: each writes its record into docs/benchmarks/ (benchmarks/report.py says how); the page follows.
# real_data_quality and study_real (hours on a CPU; resumable) need a real dataset: run them by hand (see their
# docstrings).
BENCHMARKS := phantom_speed registration train_speed reconstruction_quality generators generator_quality ldm_speed \
	render_export
bench: setup
	for b in $(BENCHMARKS); do $(BIN)/python benchmarks/$$b.py --json docs/benchmarks || exit 1; done
	$(MAKE) bench-report

# docs/BENCHMARKS.md from the records in docs/benchmarks/*.json
bench-report: setup
	$(BIN)/python benchmarks/report.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
