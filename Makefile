# dingdee — make help lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PY := $(BIN)/python
# layers, bottom up: the library, the services (and the sandboxes), the operator tools, dev tools
PACKAGES := -e shared -e services/sandbox -e services/extractor -e services/transformer \
	-e services/loader -e tools/ops -e tools/dev
# dingtalk-stream: only the events test uses it (the official client against the sandbox gateway)
DEV_TOOLS := pytest pytest-asyncio pytest-timeout pytest-xdist hypothesis ruff mypy types-PyYAML \
	kubernetes-validate kingdee-cdp-webapi-sdk dingtalk-stream import-linter \
	grafana-foundation-sdk selenium
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=
# The suite mostly waits (outages, group joins, faust assignment): tests run in parallel workers,
# each with its own embedded broker. TEST_WORKERS=0 runs them in this process.
TEST_WORKERS ?= 4
XDIST := -n $(TEST_WORKERS) --dist load

.PHONY: help install run test test-unit test-integration check lint format typecheck imports bench clean dlq-replay promtool browser

help: ## Show this help
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}'

$(STAMP): constraints.txt shared/pyproject.toml services/*/pyproject.toml tools/*/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt $(PACKAGES) $(DEV_TOOLS)
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install every package with pinned versions

run: install ## Run the whole pipeline locally (embedded broker + sandboxes) with live progress
	$(BIN)/dingdee-dev run

test: install promtool browser ## Install everything and run the whole suite (import layers, then unit → contract → integration → fault)
	$(BIN)/lint-imports
	$(BIN)/pytest $(XDIST) $(PYTEST_ARGS)

test-unit: install ## Unit tests only (no network)
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

test-integration: install browser ## Integration and fault tests (embedded broker)
	$(BIN)/pytest $(XDIST) tests/integration tests/fault $(PYTEST_ARGS)

check: lint typecheck imports ## ruff + mypy + import layers

lint: install ## ruff
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install ## ruff format + autofix
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

typecheck: install ## mypy (strict): every package, the tests and the benchmarks
	$(BIN)/mypy shared/src services/extractor/src services/transformer/src services/loader/src \
		services/sandbox/src tools/ops/src tools/dev/src tests bench

imports: install ## import-linter: the layers of docs/DESIGN.md "Layout" (dev → ops → services → common)
	$(BIN)/lint-imports

bench: install ## Benchmarks: ratios against baselines measured in the same run
	$(PY) -m bench

promtool: ## Install Prometheus (promtool + server) from Debian when missing
	@command -v promtool >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq prometheus >/dev/null; \
	  else echo "promtool missing: apt-get install prometheus"; fi; }

# the console's browser test drives Debian's Chromium; a CJK font draws its Chinese labels
browser: ## Install Chromium, chromedriver and a CJK font from Debian when missing
	@{ [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] && fc-list :lang=zh | grep -q .; } || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
	    chromium chromium-driver fonts-wqy-microhei >/dev/null; \
	  else echo "browser missing: apt-get install chromium chromium-driver fonts-wqy-microhei"; fi; }

dlq-replay: install ## Dry-run a DLQ replay: make dlq-replay ARGS="--stage loader"
	$(BIN)/dingdee dlq replay $(ARGS)

clean: ## Remove the virtualenv and caches
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .run
