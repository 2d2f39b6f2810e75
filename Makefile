# The README's two commands: `make demo` (the main job) and `make test`.
# Each creates .venv with the Python it finds and installs what it needs.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The browser test drives this Chromium; BROWSER=0 skips installing it and the test.
CHROMIUM ?= /usr/bin/chromium
BROWSER ?= 1

.PHONY: demo test install install-dev notebooks clean

demo: $(VENV)/.installed
	$(BIN)/python -m grulm_edu train

ifeq ($(BROWSER),1)
test: $(VENV)/.installed-dev
	tools/install_chromium.sh $(CHROMIUM)
	GRULM_EDU_BROWSER_TEST=required GRULM_EDU_CHROMIUM=$(CHROMIUM) $(BIN)/python -m pytest
else
test: $(VENV)/.installed-dev
	$(BIN)/python -m pytest
endif

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
