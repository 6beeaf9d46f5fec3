# Two commands matter: `make serve` and `make test`. Each installs what is missing first.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
# What `uv venv` is asked for: the same interpreter by default; a version (VENV_PYTHON=3.11) lets uv
# use a Python it manages, downloaded when absent (the Dockerfile does this: no 3.11 on its base).
VENV_PYTHON ?= $(PYTHON)
UV_VERSION := 0.13.8
UV := .tools/uv/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
CONFIG ?= configs/local.yaml
STORE ?= models

export RAY_USAGE_STATS_ENABLED := 0

.PHONY: serve test test-heavy test-fast install models lock bench test-tools clean

serve: install models
	$(PY) -m serve_app run $(CONFIG)

# Lint, unit, HTTP-layer, integration with a real Ray Serve, e2e over HTTP: everything but the cold
# starts of whole apps of their own (marker `heavy`), which `make test-heavy` runs in a Ray of its
# own. CI (.ci/run) runs both, one after the other.
test: install models test-tools
	$(PY) -m ruff check .
	$(PY) -m mypy $(MYPY_PATHS)
	$(PY) -m pytest -m "not heavy" --durations=15

test-heavy: install models test-tools
	$(PY) -m pytest -m heavy --durations=15

# The inner loop: lint, types, unit and HTTP-layer tests; no Ray, no model loading beyond tokenizers.
# mypy checks the contracts, the gateway, the HTTP layer, the batch runner and the LLM wing (pyproject.toml).
MYPY_PATHS := serve_app/protocol serve_app/config serve_app/gateway serve_app/http serve_app/batch deployments/llm
test-fast: install models
	$(PY) -m ruff check .
	$(PY) -m mypy $(MYPY_PATHS)
	$(PY) -m pytest tests/unit tests/http -m "not slow and not heavy"

install: $(INSTALLED)

# uv, not pip: pip on some machines prefers a local CPU-only torch wheel that
# breaks the index's torchvision/torchaudio (docs/testing.md, "Offline traps").
$(UV):
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --target .tools/uv uv==$(UV_VERSION)

# --compile-bytecode: every replica is a fresh process importing torch and transformers, and where
# PYTHONDONTWRITEBYTECODE is set (CI images often set it) none of that compiled code is ever cached:
# each process would compile it all again, about twice the import time. Compiling once here costs
# about a minute and a half on 2 cores.
$(INSTALLED): pyproject.toml requirements.lock | $(UV)
	$(UV) venv --quiet --allow-existing --python $(VENV_PYTHON) $(VENV)
	$(UV) pip sync --compile-bytecode --python $(PY) requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $@

# Speech tests synthesise voice with espeak-ng when it is there (else an amplitude-modulated
# tone): install it when we can (root + apt), never fail the build when we cannot.
# The metrics tests need a real Prometheus (promtool checks the shipped rules): Debian's package,
# installed the same way; without it those tests fail and say how to install it.
# The gateway's server-mode tests start a real redis-server and PostgreSQL (Debian's packages, the
# same way; Debian keeps initdb/pg_ctl under /usr/lib/postgresql/<version>/bin); without them they skip.
# The console's tests drive Debian's chromium through Playwright (no browser download).
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends
TEST_PACKAGES := espeak-ng prometheus redis-server postgresql chromium
test-tools:
	@command -v espeak-ng >/dev/null && command -v prometheus >/dev/null && command -v redis-server >/dev/null && \
		command -v chromium >/dev/null && \
		{ command -v initdb >/dev/null || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; } || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && ($(APT_GET) $(TEST_PACKAGES) >/dev/null 2>&1 || \
		 (apt-get update -qq >/dev/null 2>&1 && $(APT_GET) $(TEST_PACKAGES) >/dev/null 2>&1)); } || \
		echo "some of $(TEST_PACKAGES) not installed (apt-get install $(TEST_PACKAGES), as root)"

# Idempotent: verifies what is in the store and builds only what is missing or bad.
models: install
	$(PY) -m serve_app build-tiny-models --store $(STORE)

# Re-resolve the full pin set from pyproject.toml (whisperx's overrides live there).
lock: | $(UV)
	$(UV) pip compile pyproject.toml --extra test --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-header --no-annotate --quiet -o requirements.lock

# Each script starts configs/local.yaml (or a slim copy) itself and prints its ratios; about 20 minutes in all.
bench: install models test-tools
	$(PY) benchmarks/serving_path.py
	$(PY) benchmarks/chat_latency.py
	$(PY) benchmarks/llm_batching.py
	$(PY) benchmarks/metrics_overhead.py
	$(PY) benchmarks/vision_throughput.py
	$(PY) benchmarks/vision_bound.py
	$(PY) benchmarks/video_rtf.py --seconds 120
	$(PY) benchmarks/diarization.py --seconds 120 --rounds 5
	$(PY) benchmarks/llm_variants.py
	$(PY) benchmarks/gateway_overhead.py
	$(PY) benchmarks/batch_throughput.py
	$(PY) benchmarks/bulk_media.py

clean:
	rm -rf $(VENV) .tools data .pytest_cache
