# Two commands set up a fresh machine: `make dashboard` (serve the sample runs) and `make test`.
PYTHON ?= python3
PIP := $(PYTHON) -m pip install --quiet --disable-pip-version-check --root-user-action=ignore
PORT ?= 8501
LOGDIR ?= sample_runs
# CPU builds of the other backends: JAX runs the two-process "only the chief writes" test on every `make test`.
JAX_CPU := jax==0.10.2 jaxlib==0.10.2

.PHONY: setup graphviz chromium dashboard demo test test-distributed test-backends lint bench samples mutation

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
	$(MAKE) --no-print-directory test-distributed
	$(PYTHON) -m pytest -q

# Distributed training: two real JAX processes joined by jax.distributed; only process 0 may write a run (~15 s of
# test; JAX's CPU wheels are a plain pip install). The TensorFlow variant (two MultiWorkerMirroredStrategy workers)
# runs with the rest of the suite.
test-distributed: setup
	$(PIP) $(JAX_CPU)
	KERAS_BACKEND=jax $(PYTHON) -m pytest -q tests/test_callback_distributed.py

# The callback tests (tests/test_callback_*.py) under the JAX and PyTorch backends (CPU builds).
test-backends: setup
	$(PIP) $(JAX_CPU) torch==2.13.0
	KERAS_BACKEND=jax $(PYTHON) -m pytest -q tests/test_callback_*.py
	KERAS_BACKEND=torch $(PYTHON) -m pytest -q tests/test_callback_*.py

# Mutation testing of callbacks/, monitor/ and the Streamlit-free app modules (tests/mutation.py says which files and
# tests; JAX rechecks the code only JAX runs); writes the scores into docs/testing.md. Not part of `make test`.
# All groups together take about 45-65 minutes here (docs/testing.md); `make mutation SINCE=main` runs only the groups a
# branch changed.
mutation: setup
	$(PIP) $(JAX_CPU)
	$(PYTHON) tests/mutation.py $(if $(SINCE),--since $(SINCE))

samples: setup
	$(PYTHON) -m sample_runs.generate

bench: setup
	$(PYTHON) bench/callback_overhead.py
	$(PYTHON) bench/dashboard_speed.py
	$(PYTHON) bench/first_chart.py
	$(PYTHON) bench/object_storage.py

lint:
	$(PYTHON) -m ruff check .
