# The README's commands. Each target sets up what it needs: a ./.venv with the
# project installed, and Graphviz's `dot` program for the drawings. ARGS passes
# options on to the command: make train ARGS="--optimizer adam", make bench ARGS=--quick.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
NOTEBOOK_STAMP := $(VENV)/.installed-notebook
ARGS   ?=

.PHONY: demo train jacobians test test-oldest bench bench-peers graph steps notebook notebook-outputs dot chromium clean

demo: $(STAMP) dot
	$(BIN)/python -m models.train

train: $(STAMP) dot
	$(BIN)/python -m models.train $(ARGS)

jacobians: $(STAMP)
	$(BIN)/python -m models.jacobians

test: $(STAMP) dot chromium
	$(BIN)/python -m pytest -q $(ARGS)

# The suite again against the oldest numpy pyproject.toml allows (its numpy>=
# bound), in a second venv; pip picks the other packages to suit that numpy.
OLDEST       := .venv-oldest
NUMPY_OLDEST := $(shell sed -n 's/.*"numpy>=\([0-9.]*\)".*/\1/p' pyproject.toml)

test-oldest: $(OLDEST)/.installed-numpy-$(NUMPY_OLDEST) dot
	$(OLDEST)/bin/python -m pytest -q

$(OLDEST)/.installed-numpy-$(NUMPY_OLDEST): pyproject.toml
	@test -n "$(NUMPY_OLDEST)" || { echo "error: no numpy>= bound found in pyproject.toml"; exit 1; }
	$(MAKE) --no-print-directory $(OLDEST)/bin/python VENV=$(OLDEST)
	$(OLDEST)/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' 'numpy==$(NUMPY_OLDEST).*'
	@touch $@

# Twice: as the machine is set, then with OpenBLAS choosing its own kernel (some
# machines force one through these variables; users' machines do not). Only
# this command unsets them, never the tests.
# --quick is a rough look: one run, one short table; the full run is made twice (see README).
bench: $(STAMP)
	$(BIN)/python -m tests.benchmarks.bench $(ARGS)
ifeq (,$(findstring --quick,$(ARGS)))
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
	  $(BIN)/python -m tests.benchmarks.bench --out out/bench-openblas-own-kernel.md $(ARGS)
endif

# PyTorch and JAX (CPU builds, about 1 GB), which make bench then times beside
# microtape's Hessian-vector product; the tests never need them.
bench-peers: $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[bench-peers]'

graph: $(STAMP) dot
	$(BIN)/python -m viz $(ARGS)

steps: $(STAMP) dot
	$(BIN)/python -m viz --steps steps $(ARGS)

# JupyterLab comes with the notebook extra, installed into ./.venv the first time.
# As root (a container, say) it refuses to start without --allow-root.
notebook: $(NOTEBOOK_STAMP) dot
	$(BIN)/jupyter lab $$([ "$$(id -u)" = 0 ] && echo --allow-root) notebooks/first_hour.ipynb

# Runs the notebook from the top in a fresh kernel and stores its outputs in it
# (notebooks/execute.py; the same file again on the same machine).
notebook-outputs: $(STAMP) dot
	$(BIN)/python notebooks/execute.py

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

$(NOTEBOOK_STAMP): pyproject.toml | $(STAMP)
	$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,notebook]'
	@touch $(NOTEBOOK_STAMP)

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

# Headless Chromium and its driver run the step page's browser test, which
# skips (saying why) without them.
chromium:
	@{ command -v chromium >/dev/null && command -v chromedriver >/dev/null; } || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Chromium and chromedriver with apt-get (for the step page's browser test)"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; } \
	      || echo "warning: apt-get could not install chromium; the browser test will be skipped"; \
	  else \
	    echo "note: Chromium is missing, so the step page's browser test will be skipped."; \
	    echo "  Debian/Ubuntu: sudo apt-get install chromium chromium-driver"; \
	  fi; }

clean:
	rm -rf $(VENV) $(OLDEST) out steps graph.svg graph.png graph.pdf graph.dot .pytest_cache \
	  .hypothesis build *.egg-info
