# riskpipe — every target calls a module or a script of the repo; `make help` lists them.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install up down status test test-unit run bench train evaluate chaos ui open clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

install: $(STAMP) ## Create .venv and install riskpipe with its test and bench extras (cached by pip)

$(STAMP): setup.py versions.env
	@echo "[install] creating $(VENV) and installing riskpipe (first run downloads Apache Beam and friends)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --progress-bar off -q --upgrade pip
	@echo "[install] pip install -e '.[test,bench]' (a few minutes the first time; log: $(VENV)/install.log)"
	@$(PY) -m pip install --progress-bar off -e '.[test,bench]' > $(VENV)/install.log 2>&1 \
		|| { tail -n 25 $(VENV)/install.log; echo "[install] pip failed; the whole log: $(VENV)/install.log"; exit 1; }
	@echo "[install] $$(grep '^Successfully installed' $(VENV)/install.log | wc -w | awk '{print ($$1 > 2 ? $$1 - 2 : 0)}') packages installed"
	@$(PY) -c "import apache_beam, confluent_kafka, psycopg2, pymongo, quixstreams, lightgbm" 2> $(VENV)/import-check.log \
		|| { cat $(VENV)/import-check.log; exit 1; }
	@touch $(STAMP)
	@echo "[install] done"

up: install ## Install what is missing and start the local stack (Kafka, Postgres, Mongo, S3, Flink, Prometheus)
	@$(PY) -m stack up

down: ## Stop every local service and job; leaves no process behind
	@if [ -x $(PY) ]; then $(PY) -m stack down; else $(PYTHON) -m stack down; fi

status: ## Show the health of every local service
	@$(PY) -m stack status

# The Flink recovery tests (TaskManager kill, savepoint restart) and the long faults run with
# `make chaos`; `make test` runs the fast faults (tests/e2e/test_fast_faults.py), scaled down.
test: install ## Run the test suite against real local services (started first)
	@$(PY) -m stack up
	@$(PY) -m stack install prism
	@# --dist loadscope: a module's tests on one worker, so its module fixture runs once (two
	@# workers running a fixed-seed fixture at once cleared each other's rows).
	@$(PY) -m pytest tests -m "not serial" -n 2 --dist loadscope --ignore=tests/e2e/test_flink_recovery.py
	@$(PY) -m pytest tests -m serial --ignore=tests/e2e/test_flink_recovery.py

test-unit: install ## The tests that need no service, property tests at 30 % of their examples; starts nothing
	@RISKPIPE_NO_SERVICES=1 RISKPIPE_TEST_EXAMPLES=0.3 $(PY) -m pytest tests -m "not services" -q -n 2 --dist worksteal

run: install ## The demo: stack, validator, simulator and the job on Flink; prints where to look
	@$(PY) -m tools.demo

# One seeded simulation, then each engine over it: a plain baseline, a Quix Streams peer, the job
# on the FnApiRunner and on Flink; then the job's latency on Flink at 200 and 1,000 tx/s.
bench: install ## Benchmarks: the job on Flink and the FnApiRunner vs a Quix Streams peer and a baseline, same topics; Flink latency; prints JSON
	@$(PY) -m tools.bench --latency-rates 200,1000

# The `ml` extra (matplotlib) only where it is used, installed quietly once.
ML := $(PY) -c "import matplotlib" 2>/dev/null || { echo "[install] the ml extra (matplotlib, for the pictures; log: $(VENV)/install-ml.log)"; \
	$(PY) -m pip install --progress-bar off -q -e '.[ml]' > $(VENV)/install-ml.log 2>&1 \
	|| { tail -n 25 $(VENV)/install-ml.log; exit 1; }; }

train: install ## Train the fraud model on simulated data into models/fraud-lgbm-v1 (minutes; replays cached)
	@$(ML)
	@$(PY) -m tools.train

evaluate: install ## Detection of the fraud the bank missed, on held-out seeds, per family, leave-one-out; JSON + PNGs
	@$(ML)
	@$(PY) -m tools.evaluate

chaos: install ## Flink recovery tests, then a fault-free reference run and every fault over the same seeded input on Flink, reconciled per sink; prints the table (FAULTS=a,b)
	@$(PY) -m stack up
	@$(PY) -m pytest tests/e2e/test_flink_recovery.py
	@$(PY) -m tools.chaos $(if $(FAULTS),--faults $(FAULTS))

ui: ## Print the Flink UI, Prometheus and validator URLs
	@$(PY) -m stack urls

open: ## Print the Grafana URL of the docker-compose stack
	@echo "Grafana (docker compose only): http://127.0.0.1:3000  (admin / admin)"

clean: down ## Stop everything and delete the local state (.state/); keeps the download cache
	@rm -rf .state
	@echo "[clean] removed .state/ (downloads stay cached in $${RISKPIPE_CACHE_DIR:-~/.cache/riskpipe})"
