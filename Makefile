# Berth: `make run` starts the registry with embedded defaults; `make test` runs every test.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 5000
DATA   ?= ./data

.PHONY: run test unit e2e process chaos fuzz clients bench bench-quick bench-tools conformance-compare gc clean image image-test

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test,postgres]'
	touch $@

run: $(BIN)/.installed
	$(BIN)/berth serve --host $(HOST) --port $(PORT) --data $(DATA)

# real registry clients (skopeo, podman, buildah, containerd, umoci, docker-registry) from Debian
clients:
	bash .ci/install-clients

test: $(BIN)/.installed clients
	$(BIN)/pytest -q -rfEsx -p no:cacheprovider $(PYTEST_ARGS)

unit: $(BIN)/.installed
	$(BIN)/pytest -q -rfEsx -m 'not e2e and not process' $(PYTEST_ARGS)

e2e: $(BIN)/.installed clients
	$(BIN)/pytest -q -rfEsx -m e2e $(PYTEST_ARGS)

# real berth processes: two servers on one data dir, SIGKILL mid-upload, berth gc (tests/process)
process: $(BIN)/.installed
	$(BIN)/pytest -q -rfEsx -m process $(PYTEST_ARGS)

# SIGKILL a real berth serve N times under concurrent pushes, then verify every 201 and fsck;
# and gc in a tight loop under load (tests/chaos). `make chaos N=200 SEED=1234 DB=sqlite`
chaos: N ?= 30
chaos: $(BIN)/.installed
	CHAOS_KILLS=$(N) CHAOS_KILLS_POSTGRES=$(N) CHAOS_KILLS_S3=$(N) $(if $(SEED),CHAOS_SEED=$(SEED)) $(if $(DB),BERTH_TEST_DATABASES=$(DB)) \
	$(BIN)/pytest -q -rfEsx -s -m chaos $(PYTEST_ARGS)

# generated hostile input against live servers, auth on/off, SQLite and PostgreSQL (tests/fuzz);
# N cases in all (the test suite runs FUZZ_EXAMPLES=2400 by default): make fuzz N=20000
fuzz: N ?= 10000
fuzz: $(BIN)/.installed
	FUZZ_EXAMPLES=$(N) $(BIN)/pytest -q -rfEs -p no:cacheprovider tests/fuzz $(PYTEST_ARGS)

# the bench's extra (matplotlib for the chart of ratios)
$(BIN)/.bench-installed: $(BIN)/.installed pyproject.toml
	$(BIN)/pip install -q -e '.[bench]'
	touch $@

# the load generators and HTTP client of the bench (Debian: wrk, apache2-utils for ab, curl)
bench-tools:
	@command -v wrk >/dev/null && command -v ab >/dev/null && command -v curl >/dev/null || \
	  { [ "$$(id -u)" -eq 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk apache2-utils curl; }

# Berth (--workers 2, auth on) vs Distribution 2.8.2 (token auth), every row 3 times interleaved;
# wrk/ab, curl and skopeo must be installed. Table on stdout, JSON and bench/results/ratios.png
# (docs/performance.md). ~8 min on the idle 2-core machine, ~19 when busy; `make bench BENCH_ARGS="--rows blob-push"`
bench: $(BIN)/.bench-installed clients bench-tools
	$(BIN)/python bench/run.py $(BENCH_ARGS)

# the same rows once, with a small blob and 2 s load samples (~2 min)
bench-quick: $(BIN)/.bench-installed clients bench-tools
	$(BIN)/python bench/run.py --repeat 1 --size 128M --skopeo-layer-size 4M --duration 2 --wait-idle 2 $(BENCH_ARGS)

# a large blob pushed and pulled through `berth serve` on the s3 driver into SeaweedFS (weed from the test extras)
bench-s3: $(BIN)/.installed
	$(BIN)/python bench/s3_push.py $(BENCH_ARGS)

# the conformance port (tests/conformance) over HTTP against `berth serve` and Distribution 2.8.2
conformance-compare: $(BIN)/.installed clients
	$(BIN)/python bench/conformance_compare.py $(COMPARE_ARGS)

# the container image with no Docker engine and no registry: a debootstrap Debian base, then
# `buildah bud` of the Dockerfile (tests/deploy/image.sh; ~5 min the first time, ~1 min after)
image:
	bash tests/deploy/image.sh build

# that image run with podman: non-root, read-only root, HEALTHCHECK, a multi-arch push and a pull
# with a pull Secret through it (tests/deploy/test_image.py; `make test` checks the Dockerfile statically)
image-test: $(BIN)/.installed clients image
	$(BIN)/pytest -q -rfEsx -p no:cacheprovider -m image tests/deploy $(PYTEST_ARGS)

gc: $(BIN)/.installed
	$(BIN)/berth gc --data $(DATA)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
