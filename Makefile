# One entry point for every workflow. Targets create and reuse .venv from the lock files.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements-dev.lock pyproject.toml | cksum | cut -d' ' -f1)
UV_VERSION := 0.13.9
PORT ?= 3000

export PYTHONPATH := $(CURDIR)
# No target sends usage data: BentoML's tracking, and the analytics of the optional Prefect and
# MLflow, are off for everything run from here.
export BENTOML_DO_NOT_TRACK := True
export DO_NOT_TRACK := 1

.PHONY: help setup lock train serve test test-loaded lint format

help:  ## list the targets
	@grep -E '^[a-z0-9-]+:.*##' $(MAKEFILE_LIST) | awk -F':.*## ' -v port='$(PORT)' \
		'{gsub(/\$$\(PORT\)/, port, $$2); printf "  %-14s %s\n", $$1, $$2}'

# Bytecode is compiled at install (uv does not by default): a server process that finds no
# .pyc compiles every module it imports, on every start where PYTHONDONTWRITEBYTECODE is set
# or the tree is read-only; that tripled the start-up time (docs/performance.md, "Start-up").
$(STAMP): requirements-dev.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(BIN)/uv pip install -q --compile-bytecode --python $(BIN)/python -r requirements-dev.lock
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-* && touch $@

setup: $(STAMP)  ## create .venv with the locked dependencies and the project (editable, with `credit-risk`)

# The dev lock resolves everything together (runtime, dev tools, the optional training,
# pipeline, portfolio and spark groups); the runtime lock is the runtime's share of that same
# resolution, so the bento and the image never carry scikit-learn, pandas, SciPy, Prefect,
# MLflow, PyArrow or PySpark.
lock: setup  ## re-resolve the lock files after editing pyproject.toml
	$(BIN)/uv pip compile pyproject.toml -q --no-header --python-version 3.11 --group dev \
		--extra training --extra pipeline --extra portfolio --extra spark -o requirements-dev.lock
	$(BIN)/uv pip compile pyproject.toml -q --no-header --python-version 3.11 \
		-c requirements-dev.lock -o requirements.lock

train: setup  ## fit, evaluate and save a model into the BentoML store
	$(BIN)/python train.py

serve: setup  ## serve on http://127.0.0.1:$(PORT), training first if the store has no model
	@$(BIN)/bentoml models get credit_risk:latest >/dev/null 2>&1 || $(BIN)/python train.py
	$(BIN)/bentoml serve service:CreditRiskService --host 127.0.0.1 --port $(PORT)

lint: setup  ## ruff check, ruff format --check, mypy (strict on credit_risk/)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: setup  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: lint  ## lint, then the whole test suite
	$(BIN)/pytest

# No test may depend on how fast the machine is: the same suite with one core kept busy.
test-loaded: lint  ## the whole test suite with one core kept busy by stress-ng (make stress installs it)
	@command -v stress-ng >/dev/null 2>&1 || { echo "make test-loaded needs stress-ng: make stress" >&2; exit 2; }
	@stress-ng --cpu 1 --timeout 0 --quiet & hog=$$!; trap 'kill $$hog' EXIT; $(BIN)/pytest

# --- bento, OCI image, Kubernetes (bentofile.yaml, deploy/k8s) ------------------------------
BENTO := credit_risk_service
CONTAINER_ENV ?= ../shared/tools/container-env.sh
# Where the shared provisioning script exists, put its docker CLI (BuildKit built in) first.
# A relative CONTAINER_ENV is taken from this directory (the repository root, or make -C's),
# made absolute here, so it holds in any directory a recipe runs from (containerize runs from the
# temporary one). One given on the command line or in the environment that is not there stops
# the target: skipped, it ended in docker's "BuildKit is enabled but the buildx component is
# missing". Only the default may be absent: then the docker on PATH builds, and a note says so.
CONTAINER_ENV_PATH := $(abspath $(CONTAINER_ENV))
WITH_ENGINE := if [ -f "$(CONTAINER_ENV_PATH)" ]; then \
		eval "$$(bash "$(CONTAINER_ENV_PATH)" env)"; \
	elif [ "$(origin CONTAINER_ENV)" != file ]; then \
		echo "CONTAINER_ENV=$(CONTAINER_ENV): no such file ($(CONTAINER_ENV_PATH))" >&2; exit 2; \
	else \
		echo "note: no $(CONTAINER_ENV_PATH), so the docker CLI on PATH is used; if it lacks" \
			"buildx, set CONTAINER_ENV to the provisioning script (docs/deployment.md)" >&2; \
	fi;
NEWEST_BENTO = $(BIN)/bentoml get $(BENTO):latest -o json \
	| $(BIN)/python -c 'import json, sys; print(json.load(sys.stdin)["version"])'

.PHONY: build containerize run-image container-test

build: setup  ## bentoml build -> bento credit_risk_service:<version> (trains if the store has no model)
	@$(BIN)/bentoml models get credit_risk:latest >/dev/null 2>&1 || $(BIN)/python train.py
	@# the champion and challenger resolved now travel with the bento (docs/champion-challenger.md)
	$(BIN)/credit-risk champion --export promoted_models.json
	$(BIN)/bentoml build .; status=$$?; rm -f promoted_models.json; exit $$status

# Run from the temporary directory: BentoML 1.4.40 copies the bento there and refuses to read
# its Dockerfile template from outside the current directory (docs/design.md).
containerize: setup  ## OCI image credit_risk_service:<version> (and :latest) from the newest bento
	@$(BIN)/bentoml get $(BENTO):latest >/dev/null 2>&1 || $(MAKE) build
	@$(WITH_ENGINE) version=$$($(NEWEST_BENTO)) && set -x && \
	cd "$$($(BIN)/python -c 'import tempfile; print(tempfile.gettempdir())')" && \
	$(CURDIR)/$(BIN)/bentoml containerize $(BENTO):$$version \
		-t $(BENTO):$$version -t $(BENTO):latest

run-image:  ## run the image on http://127.0.0.1:$(PORT) as the pod does (read-only, non-root)
	@$(WITH_ENGINE) set -x && docker run --rm --name $(BENTO) -p 127.0.0.1:$(PORT):3000 \
		--user 10001:10001 --read-only --cap-drop ALL --security-opt no-new-privileges \
		--tmpfs /tmp:size=64m --tmpfs /var/lib/bentoml:size=256m,uid=10001,gid=10001 \
		--tmpfs /var/log/credit-risk:size=1g,uid=10001,gid=10001 \
		-v $(CURDIR)/deploy/k8s/base/bentoml_config.yaml:/etc/bentoml/bentoml_config.yaml:ro \
		-e BENTOML_CONFIG=/etc/bentoml/bentoml_config.yaml -e BENTOML_HOME=/var/lib/bentoml \
		-e PYTHONDONTWRITEBYTECODE=1 -e BENTOML_DO_NOT_TRACK=True -e POD_NAME=$(BENTO) \
		--cpus 2 --memory 1536m $(BENTO):latest

container-test: setup  ## the tests marked `container` (needs an engine: container-env.sh up)
	@$(WITH_ENGINE) CONTAINER_ENV="$(CONTAINER_ENV_PATH)" $(BIN)/pytest -m container

# --- load tests and benchmark (load_tests/) ---------------------------------------------------
LOAD_HOST ?= http://127.0.0.1:$(PORT)
LOAD_USERS ?= 32
LOAD_TIME ?= 60s
BENCH_ARGS ?=

.PHONY: load-test bench

load-test: setup  ## headless Locust against a running server (LOAD_HOST, LOAD_USERS, LOAD_TIME) -> reports/locust*
	@mkdir -p reports
	$(BIN)/locust -f load_tests/locustfile.py --headless --host $(LOAD_HOST) \
		-u $(LOAD_USERS) -r $(LOAD_USERS) -t $(LOAD_TIME) --stop-timeout 10 \
		--csv reports/locust --html reports/locust.html

bench: setup  ## ours (batching on/off, shadow, SQLite/PostgreSQL) vs the floor and Flask+gunicorn under wrk -> reports/benchmark.{md,png} (~11 min; BENCH_ARGS="--before COMMIT" adds ours at a commit)
	@command -v wrk >/dev/null 2>&1 || { echo "make bench needs wrk, the load generator:" \
		"sudo apt-get install -y wrk (Debian/Ubuntu) or brew install wrk (macOS)." \
		"Nothing is installed automatically." >&2; exit 2; }
	@$(BIN)/bentoml models get credit_risk:latest >/dev/null 2>&1 \
		|| $(BIN)/python train.py
	$(BIN)/python -m load_tests.bench --command "make bench$(if $(BENCH_ARGS), BENCH_ARGS='$(BENCH_ARGS)')" $(BENCH_ARGS)

# --- loan-officer form (credit_risk/serving/ui.py) ----------------------------------------------------
CHROMIUM := /usr/bin/chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: browser wrk h2load stress nginx

browser:  ## install Debian's chromium for the form's browser test (tests/service/test_ui_browser.py) if missing
	@test -x $(CHROMIUM) || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium; }
	@$(CHROMIUM) --version 2>/dev/null

wrk:  ## install Debian's wrk for make bench and its test (tests/benchmarks/test_baseline.py) if missing
	@command -v wrk >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk; }
	@wrk --version 2>&1 | head -1

# --- dashboards and alerts (deploy/monitoring, credit_risk/monitoring) ------------------------------
.PHONY: prometheus

prometheus:  ## install Debian's prometheus (and promtool) for the alert and dashboard tests (tests/monitoring, tests/service/test_monitoring.py) if missing
	@{ command -v promtool && command -v prometheus; } >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq prometheus; }
	@promtool --version 2>&1 | head -1

h2load:  ## install Debian's nghttp2-client (h2load) for make overload, its test and the edge test's C clients if missing
	@command -v h2load >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nghttp2-client; }
	@h2load --version 2>&1 | head -1

nginx:  ## install Debian's nginx-light for the ingress test (tests/service/test_ingress_limits.py) if missing
	@command -v nginx >/dev/null 2>&1 || test -x /usr/sbin/nginx || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq nginx-light; }
	@/usr/sbin/nginx -v 2>&1

stress:  ## install Debian's stress-ng for make test-loaded if missing
	@command -v stress-ng >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq stress-ng; }
	@stress-ng --version 2>&1 | head -1

# checkov pins older packaging and schema than BentoML resolves with, so it lives in a
# virtualenv of its own instead of the dev lock (where it would move the runtime lock's pins).
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov

.PHONY: checkov

checkov: setup  ## install checkov $(CHECKOV_VERSION) into .venv-checkov for the manifest scan (tests/deploy/test_deploy.py) if missing
	@test -x $(CHECKOV_VENV)/bin/checkov || { $(BIN)/uv venv -q --python $(BIN)/python $(CHECKOV_VENV) && \
		$(BIN)/uv pip install -q --python $(CHECKOV_VENV)/bin/python checkov==$(CHECKOV_VERSION); }
	@$(CHECKOV_VENV)/bin/checkov --version

# --- reliability: generated bad input, supply chain (tests/service/test_fuzz_api.py, tests/deploy/test_supply_chain.py)
FUZZ_EXAMPLES ?= 2000

.PHONY: fuzz audit

fuzz: setup  ## schemathesis from /docs.json against a real server, FUZZ_EXAMPLES (2000) per operation; FUZZ_URL=... to target a running one
	FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/pytest -q -rs -s -p no:cacheprovider tests/service/test_fuzz_api.py

audit: setup  ## requirements.lock against PyPI's advisories: pip-audit, and PyPI's project pages (exceptions: audit-allowlist.txt)
	$(BIN)/pytest -q -rs -p no:cacheprovider tests/deploy/test_supply_chain.py -k "vulnerabilities or advisories or allowlist"

# --- reliability: faults and overload (tests/service/test_faults.py, load_tests/overload.py) ----------
OVERLOAD_ARGS ?=

.PHONY: faults overload

faults: setup  ## the fault tests alone: runner SIGKILLed under load, unservable models refused (~2 min)
	$(BIN)/pytest -q -rxs -p no:cacheprovider tests/service/test_faults.py

overload: setup  ## open-loop 4x capacity for 30 s between normal load -> reports/overload.{md,json} (~2 min; the schedule: load_tests/overload.py; needs h2load)
	@command -v h2load >/dev/null 2>&1 || { echo "make overload needs h2load: make h2load (Debian's nghttp2-client)" >&2; exit 2; }
	@$(BIN)/bentoml models get credit_risk:latest >/dev/null 2>&1 \
		|| $(BIN)/python train.py
	$(BIN)/python -m load_tests.overload --command "make overload$(if $(OVERLOAD_ARGS), OVERLOAD_ARGS='$(OVERLOAD_ARGS)')" $(OVERLOAD_ARGS)

# --- retraining pipeline: Prefect flow, MLflow tracking, quality gates (docs/pipeline.md) -----------
# Prefect and MLflow are the `pipeline` extra, in the dev lock: `make setup` installs them.
FLOW_ARGS ?=
MLFLOW_URI ?= sqlite:///mlflow.db

.PHONY: train-flow mlflow-ui

train-flow: setup  ## the training flow: gates, then MLflow run + registry and the BentoML store (FLOW_ARGS='--quick')
	$(BIN)/credit-risk train --flow $(FLOW_ARGS)

mlflow-ui: setup  ## MLflow's UI on http://127.0.0.1:5000 over the local tracking store (MLFLOW_URI)
	$(BIN)/mlflow ui --backend-store-uri $(MLFLOW_URI) --host 127.0.0.1 --port 5000

# --- portfolio scoring: credit-risk score and its Spark twin (credit_risk/portfolio, load_tests/portfolio_bench.py)
PORTFOLIO_BENCH_ARGS ?=

.PHONY: java postgresql bench-portfolio

java:  ## install Debian's Java 17 runtime for the Spark tests (tests/portfolio/test_spark.py) if `java` is missing
	@command -v java >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq openjdk-17-jre-headless; }
	@java -version 2>&1 | head -1

postgresql:  ## install Debian's PostgreSQL server for the decision-store tests (tests/postgres.py) if missing
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq postgresql; }
	@ls /usr/lib/postgresql/*/bin/initdb

bench-portfolio: setup  ## 1M-row book Parquet->Parquet, peak RSS on 5M, /classify_batch and Spark local[2] -> reports/portfolio-bench.{md,json} (~6 min, needs wrk, java, GNU time)
	@command -v wrk >/dev/null 2>&1 || { echo "make bench-portfolio needs wrk: sudo apt-get install -y wrk" >&2; exit 2; }
	@command -v java >/dev/null 2>&1 || { echo "make bench-portfolio needs Java 17 for Spark: make java" >&2; exit 2; }
	@test -x /usr/bin/time || { echo "make bench-portfolio needs GNU time for peak RSS: sudo apt-get install -y time" >&2; exit 2; }
	@$(BIN)/bentoml models get credit_risk:latest >/dev/null 2>&1 \
		|| $(BIN)/python train.py
	$(BIN)/python -m load_tests.portfolio_bench --command "make bench-portfolio$(if $(PORTFOLIO_BENCH_ARGS), PORTFOLIO_BENCH_ARGS='$(PORTFOLIO_BENCH_ARGS)')" $(PORTFOLIO_BENCH_ARGS)

# --- start-up time (load_tests/startup.py) ----------------------------------------------------
STARTUP_RUNS ?= 5

.PHONY: startup

startup: setup  ## spawn-to-first-200 on /classify and where it goes, STARTUP_RUNS (5) starts -> reports/startup.{md,json}
	@$(BIN)/bentoml models get credit_risk:latest >/dev/null 2>&1 || $(BIN)/python train.py
	$(BIN)/python -m load_tests.startup --runs $(STARTUP_RUNS) --command "make startup STARTUP_RUNS=$(STARTUP_RUNS)"

# --- micro-benchmarks (tests/benchmarks/test_microbench.py, pytest-benchmark) ------------------
# The per-call figures the docs quote, each against the baseline committed under
# load_tests/results/microbench/: a benchmark fails when its fastest round is 30 % slower
# (the fastest is the figure least disturbed by other work on a shared machine).
MICROBENCH := $(BIN)/pytest -q -p no:cacheprovider -m microbench tests/benchmarks/test_microbench.py \
	--benchmark-only --benchmark-storage=file://$(CURDIR)/load_tests/results/microbench \
	--benchmark-min-rounds=50 --benchmark-max-time=2 --benchmark-columns=min,median,mean,rounds \
	--benchmark-sort=name

.PHONY: microbench microbench-baseline

microbench: setup  ## micro-benchmarks against the committed baseline; fails on a 30 % regression (docs/performance.md)
	$(MICROBENCH) --benchmark-compare=0001 --benchmark-compare-fail=min:30%

microbench-baseline: setup  ## record a new micro-benchmark baseline (on a quiet machine) into load_tests/results/microbench/
	rm -rf load_tests/results/microbench
	$(MICROBENCH) --benchmark-save=baseline

# --- champion and challenger: promotion state, shadow scoring, back-test (docs/champion-challenger.md)
OUTCOMES ?=

.PHONY: champion backtest

champion: setup  ## the models serving resolves (pin, promotion state, newest) and the promotion audit trail
	$(BIN)/credit-risk champion

backtest: setup  ## back-test the stored decisions against OUTCOMES=file.csv|.parquet -> reports/backtest/backtest.{md,json,png}
	@test -n "$(OUTCOMES)" || { echo "usage: make backtest OUTCOMES=outcomes.csv" \
		"(decision_id, outcome good/bad, observed_at)" >&2; exit 2; }
	$(BIN)/credit-risk backtest $(OUTCOMES)
