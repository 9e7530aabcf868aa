# Weir entry points. `make run` starts a broker on localhost:9092; `make test` is what CI runs.
SHELL := /bin/bash
.DEFAULT_GOAL := help

CARGO ?= cargo
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# compat-tests run against the debug build (fast to build, checks overflows).
WEIR_BIN ?= $(TARGET_DIR)/debug/weir
export WEIR_BIN

VENV := .venv
PYTEST := $(VENV)/bin/pytest
# Per-test timeout in seconds (pytest-timeout); the whole suite stays far below 45 min.
PYTEST_TIMEOUT ?= 180
PYTEST_ARGS ?=

# RocksDB (weir-controller's metadata store): librocksdb-sys links the library in
# ROCKSDB_LIB_DIR instead of compiling RocksDB's C++ sources (far too slow on a small machine).
# Unless already set, it is Debian's librocksdb-dev: where librocksdb.so is, or, when it is not
# installed yet but apt-get is there, where build-deps (a prerequisite of every target that
# compiles) is about to install it. Left unset otherwise: the crate then builds RocksDB from source.
ifeq ($(origin ROCKSDB_LIB_DIR),undefined)
  multiarch := $(or $(shell gcc -print-multiarch 2>/dev/null),$(shell dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null))
  rocksdb_so := $(firstword $(wildcard $(if $(multiarch),/usr/lib/$(multiarch)/librocksdb.so) /usr/lib*/librocksdb.so /usr/lib*/*/librocksdb.so))
  ifneq ($(rocksdb_so),)
    ROCKSDB_LIB_DIR := $(patsubst %/,%,$(dir $(rocksdb_so)))
  else ifneq ($(and $(multiarch),$(shell command -v apt-get 2>/dev/null)),)
    ROCKSDB_LIB_DIR := /usr/lib/$(multiarch)
  endif
endif
ifdef ROCKSDB_LIB_DIR
  export ROCKSDB_LIB_DIR
endif

.PHONY: help run cluster cluster-stop build release build-deps deps test compat chaos fuzz cargo-test pytest pytest-all fmt-check lint clean bench librdkafka-ratchet librdkafka-compat

help:
	@echo "make run        release build, then weir --config weir.yaml (foreground, data in ./data)"
	@echo "make cluster   release build, then three nodes in the background (127.0.0.1:9092-9094)"
	@echo "make cluster-stop  stops the nodes make cluster started"
	@echo "make test       install test deps, build, cargo test, compat-tests (not slow)"
	@echo "make compat     like test, plus the slow compat-tests"
	@echo "make chaos      the long fault-injection run on a 3-node cluster (WEIR_CHAOS_SECONDS, WEIR_CHAOS_SEED)"
	@echo "make fmt-check  cargo fmt --check"
	@echo "make lint       cargo clippy -D warnings"
	@echo "make bench      rdkafka_performance against a release build; writes BENCHMARKS.md"
	@echo "make fuzz       the decoder fuzz/property tests, optimized, FUZZ_SECONDS (90) each (~10 min)"
	@echo "make build-deps install librocksdb-dev, libclang-dev when missing (apt-get; every build runs it)"

# The system packages the build links against: librocksdb-dev, libclang-dev (bindgen), a C
# compiler. Installs only what is missing (Debian/Ubuntu); a quick no-op otherwise.
build-deps:
	scripts/install-build-deps.sh

release: build-deps
	$(CARGO) build --release -p weir-broker

run: release
	$(TARGET_DIR)/release/weir --config weir.yaml

# Three combined broker+controller nodes from deploy/cluster/*.yaml, data and logs in
# cluster-data/; starts whichever is not running and returns once all three serve clients.
cluster: release
	WEIR_BIN=$(TARGET_DIR)/release/weir scripts/cluster.sh start

cluster-stop:
	scripts/cluster.sh stop

build: build-deps
	$(CARGO) build -p weir-broker

deps: build-deps
	scripts/install-test-deps.sh

cargo-test: build-deps
	$(CARGO) test --workspace

pytest:
	$(PYTEST) compat-tests -m "not slow and not chaos" --timeout=$(PYTEST_TIMEOUT) $(PYTEST_ARGS)

pytest-all:
	$(PYTEST) compat-tests -m "not chaos" --timeout=$(PYTEST_TIMEOUT) $(PYTEST_ARGS)

# The long fault-injection run (compat-tests/test_chaos.py): WEIR_CHAOS_SECONDS of faults
# (default 1800), WEIR_CHAOS_SEED to replay a schedule.
chaos: deps build
	$(PYTEST) compat-tests/test_chaos.py -m chaos -k long -s $(PYTEST_ARGS)

test: deps fmt-check lint build cargo-test librdkafka-ratchet
	$(MAKE) pytest

# compat also runs librdkafka's whole test suite and writes compat-tests/RESULTS.md;
# -k: it runs even when pytest-all fails (compat fails if either does).
compat: deps build cargo-test
	$(MAKE) -k pytest-all librdkafka-compat

librdkafka-compat: deps build
	$(VENV)/bin/python compat-tests/librdkafka/run.py compat

# librdkafka 2.8.0's own test suite: the tests in compat-tests/librdkafka/expected-pass.txt,
# in its quick mode, each against a fresh weir; then those of expected-pass-consumer.txt with
# the suite's consumers on KIP-848 (group.protocol=consumer). Fetches and builds the suite on
# first use (cached in compat-tests/librdkafka/.build/).
librdkafka-ratchet: deps build
	$(VENV)/bin/python compat-tests/librdkafka/run.py ratchet
	LRK_GROUP_PROTOCOL=consumer $(VENV)/bin/python compat-tests/librdkafka/run.py ratchet

fmt-check:
	$(CARGO) fmt --all -- --check

lint: build-deps
	$(CARGO) clippy --workspace --all-targets -- -D warnings

clean:
	$(CARGO) clean
	rm -rf compat-tests/.build

# Fuzzing on stable (proptest): the targets seeded from real clients' requests and batches
# (protocol-compat/tests/fuzz_corpus.rs, corpus from scripts/record-corpus.py) and the decoder
# property tests, optimized but with overflow checks and debug assertions (profile `fuzz`, built
# in $(TARGET_DIR)/fuzz). Each of the 10 properties runs FUZZ_CASES cases or FUZZ_SECONDS
# seconds, whichever ends first, two at a time on two cores: at most about 10 minutes in all.
# `make test` runs the same tests briefly, in debug.
FUZZ_CASES ?= 5000000
FUZZ_SECONDS ?= 90
FUZZ_TESTS := --test fuzz_corpus --test decoders_bounded_memory --test decoders_never_panic
FUZZ_PROFILE := --config 'profile.fuzz.inherits="release"' --config profile.fuzz.overflow-checks=true \
	--config profile.fuzz.debug-assertions=true --profile fuzz
fuzz: build-deps
	$(CARGO) test $(FUZZ_PROFILE) -p weir-protocol $(FUZZ_TESTS) --no-run
	WEIR_FUZZ_CASES=$(FUZZ_CASES) WEIR_FUZZ_SECONDS=$(FUZZ_SECONDS) timeout $$(( 10 * $(FUZZ_SECONDS) + 600 )) \
		$(CARGO) test $(FUZZ_PROFILE) -p weir-protocol $(FUZZ_TESTS) -- --nocapture

# Throughput/latency benchmark against a release build; writes BENCHMARKS.md.
# Not part of `make test`. Installs iperf3 and librdkafka-dev, builds rdkafka_performance into bench/.build/.
bench: build-deps
	CARGO_TARGET_DIR=$(abspath $(TARGET_DIR)) bench/run.sh
