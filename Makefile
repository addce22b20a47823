# Two commands set up a fresh machine: `make dashboard` (serve the sample runs) and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore
PORT ?= 8501
LOGDIR ?= sample_runs

.PHONY: setup graphviz chromium dashboard demo test test-backends lint bench samples

# The checkout is installed in editable mode as the one package `kerascope` (app/, callbacks/, monitor/ inside it).
setup: graphviz
	$(PIP) -r requirements.txt
	$(PIP) --no-deps -e .

# plot_model needs the `dot` binary; the dashboard itself does not (it renders DOT in the browser).
graphviz:
	@command -v dot >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq graphviz >/dev/null; }

# The real-browser tests drive Debian's chromium through Playwright (no browser download).
chromium:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq chromium >/dev/null; }

dashboard: setup
	$(PYTHON) -m kerascope --logdir $(LOGDIR) --port $(PORT)

demo: setup
	$(PYTHON) -m sample_runs.demo --port $(PORT)

test: setup chromium
	$(PYTHON) -m ruff check .
	$(PYTHON) -m pytest -q

# The callback tests (tests/test_callback_*.py) under the JAX and PyTorch backends (CPU builds).
test-backends: setup
	$(PIP) jax jaxlib torch==2.13.0
	KERAS_BACKEND=jax $(PYTHON) -m pytest -q tests/test_callback_*.py
	KERAS_BACKEND=torch $(PYTHON) -m pytest -q tests/test_callback_*.py

samples: setup
	$(PYTHON) -m sample_runs.generate

bench: setup
	$(PIP) tensorboard  # the peer measured side by side in bench/first_chart.py
	$(PYTHON) bench/callback_overhead.py
	$(PYTHON) bench/dashboard_speed.py
	$(PYTHON) bench/first_chart.py

lint:
	$(PYTHON) -m ruff check .
