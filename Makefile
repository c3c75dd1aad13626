# netliver: make demo | make test | make serve | make check | make bench
# Every target installs what is missing first (Python packages in .venv, Debian packages).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export PYTHONPATH := $(CURDIR)

.PHONY: install system-deps services-up check lint types imports test test-fast bench bench-clinical serve demo clean

install: system-deps $(STAMP)

# infra/constraints.txt pins every package to the versions the suite was last run with
# (refresh: .venv/bin/pip freeze --exclude-editable > infra/constraints.txt).
$(STAMP): pyproject.toml infra/constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]' -c infra/constraints.txt
	@touch $(STAMP)

# Debian packages the stack and the tests run: Redis, PostgreSQL, Orthanc with DICOMweb.
system-deps:
	@bash infra/install-system-deps.sh

# PostgreSQL and Redis on loopback (started when not running).
services-up: system-deps
	@bash infra/ensure-services.sh

check: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

lint: install
	$(VENV)/bin/ruff check .

test: install services-up
	$(PY) -m pytest -q -p no:cacheprovider

# Everything but the suites marked slow (for quick local runs).
test-fast: install services-up
	$(PY) -m pytest -q -m "not slow"

bench: install services-up
	$(PY) -m bench

# The clinical-size voxel job alone (128³ SPECT, 512×512×256 CT in an Orthanc; about a minute).
# `make bench` runs it last; BENCH_CLINICAL=0 make bench leaves it out.
bench-clinical: install services-up
	$(PY) -m bench.bench_clinical

serve: install
	$(PY) -m infra.stack serve

# make demo KEEP=1 leaves the stack running after the summary and prints the patient's page.
demo: install
	$(PY) -m infra.demo $(if $(KEEP),--keep)

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
