# mamori — the two set-up commands are `make up` and `make test`; the rest is for developers.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# demo: the hospital demo's embedding model (torch); test pins the CPU torch it resolves to;
# bench: the peer scanners `make bench` measures in the same run.
EXTRAS ?= all,demo,test,dev,bench

.PHONY: up test test-scaleout lint fmt bench ext venv clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

venv: $(VENV)/.installed

## up: install into .venv, run the scan demo, then serve the API (+ worker) until Ctrl-C
up: venv
	$(PY) -m mamori.service.up

## test: the whole suite (unit, property and integration tests)
test: venv
	$(PY) -m pytest -n 2 --dist loadgroup -p no:randomly --cov --cov-report=term:skip-covered --cov-fail-under=85

## test-scaleout: store, queue, service and MLflow tests again on PostgreSQL and Redis
##   (POSTGRES_URL: an admin SQLAlchemy URL; REDIS_URL: redis://host:port; .ci/run starts both)
test-scaleout: venv
	@test -n "$(POSTGRES_URL)" -a -n "$(REDIS_URL)" || { echo "set POSTGRES_URL and REDIS_URL"; exit 2; }
	MAMORI_TEST_POSTGRES_URL='$(POSTGRES_URL)' MAMORI_TEST_REDIS_URL='$(REDIS_URL)' \
		$(PY) -m pytest -n 2 --dist loadgroup -p no:randomly tests/store tests/lifecycle/test_service.py tests/lifecycle/mlflow tests/lifecycle/test_queue.py tests/service

## lint: formatting, lint and strict typing
lint: venv
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

## fmt: apply formatting and safe lint fixes
fmt: venv
	$(VENV)/bin/ruff format src tests bench
	$(VENV)/bin/ruff check --fix src tests bench

## ext: rebuild the compiled pickle hot loop in place (pip install -e does it too)
ext: venv
	$(PY) hatch_build.py

## bench: compare against peer scanners; results go to bench/results/
bench: venv
	$(PY) bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage
