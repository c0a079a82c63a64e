# The README's commands. Each target sets up what it needs: a ./.venv with the
# project installed, and Graphviz's `dot` program for the drawings.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: demo test bench graph dot clean

demo: $(STAMP) dot
	$(BIN)/python -m models.train

test: $(STAMP) dot
	$(BIN)/python -m pytest -q

# Twice: as the machine is set, then with OpenBLAS choosing its own kernel (some
# machines force one through these variables; users' machines do not). Only
# this command unsets them, never the tests.
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench $(BENCH_ARGS)
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
	  $(BIN)/python -m tests.benchmarks.bench --out out/bench-openblas-own-kernel.md $(BENCH_ARGS)

graph: $(STAMP) dot
	$(BIN)/python -m viz

# A fresh Debian/Ubuntu python3 may lack the venv module (package python3-venv).
$(BIN)/python:
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing python3-venv with apt-get"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
	    $(PYTHON) -m venv $(VENV); \
	  else \
	    echo "error: '$(PYTHON) -m venv' failed; install the venv module first:"; \
	    echo "  sudo apt-get install python3-venv   (Debian/Ubuntu)"; exit 1; \
	  fi; }

# Reinstalled whenever pyproject.toml changes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

# Graphviz's `dot` renders the graphs; the Python package alone cannot.
dot:
	@command -v dot >/dev/null || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Graphviz (the dot program) with apt-get"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq graphviz >/dev/null; } \
	      || echo "warning: apt-get could not install graphviz; drawings are written as .dot only"; \
	  else \
	    echo "warning: Graphviz's 'dot' program is missing, so graphs are written as .dot only."; \
	    echo "  Debian/Ubuntu: sudo apt-get install graphviz"; \
	    echo "  macOS: brew install graphviz    conda: conda install -c conda-forge graphviz"; \
	  fi; }

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis build *.egg-info
