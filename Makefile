# The README's two commands: `make demo` (the main job) and `make test`.
# Each creates .venv with the Python it finds and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test install install-dev notebooks clean

demo: $(VENV)/.installed
	$(BIN)/python -m grulm_edu train

test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

# Re-run every notebook top to bottom and store its outputs.
notebooks: $(VENV)/.installed-dev
	$(BIN)/python tools/run_notebooks.py notebooks/*.ipynb

clean:
	rm -rf $(VENV) runs
