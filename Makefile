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

.PHONY: help run build release deps test compat fuzz cargo-test pytest pytest-all fmt-check lint clean bench librdkafka-ratchet librdkafka-compat

help:
	@echo "make run        release build, then weir --config weir.yaml (foreground, data in ./data)"
	@echo "make test       install test deps, build, cargo test, compat-tests (not slow)"
	@echo "make compat     like test, plus the slow compat-tests"
	@echo "make fmt-check  cargo fmt --check"
	@echo "make lint       cargo clippy -D warnings"
	@echo "make bench      rdkafka_performance against a release build; writes BENCHMARKS.md"
	@echo "make fuzz       the decoder fuzz/property tests, optimized, FUZZ_SECONDS (90) each (~10 min)"

release:
	$(CARGO) build --release -p weir-broker

run: release
	$(TARGET_DIR)/release/weir --config weir.yaml

build:
	$(CARGO) build -p weir-broker

deps:
	scripts/install-test-deps.sh

cargo-test:
	$(CARGO) test --workspace

pytest:
	$(PYTEST) compat-tests -m "not slow" --timeout=$(PYTEST_TIMEOUT) $(PYTEST_ARGS)

pytest-all:
	$(PYTEST) compat-tests --timeout=$(PYTEST_TIMEOUT) $(PYTEST_ARGS)

test: deps fmt-check lint build cargo-test librdkafka-ratchet
	$(MAKE) pytest

# compat also runs librdkafka's whole test suite and writes compat-tests/RESULTS.md;
# -k: it runs even when pytest-all fails (compat fails if either does).
compat: deps build cargo-test
	$(MAKE) -k pytest-all librdkafka-compat

librdkafka-compat: build
	python3 compat-tests/librdkafka/run.py compat

# librdkafka 2.8.0's own test suite: the tests in compat-tests/librdkafka/expected-pass.txt,
# in its quick mode, each against a fresh weir; then those of expected-pass-consumer.txt with
# the suite's consumers on KIP-848 (group.protocol=consumer). Fetches and builds the suite on
# first use (cached in compat-tests/librdkafka/.build/).
librdkafka-ratchet: deps build
	python3 compat-tests/librdkafka/run.py ratchet
	LRK_GROUP_PROTOCOL=consumer python3 compat-tests/librdkafka/run.py ratchet

fmt-check:
	$(CARGO) fmt --all -- --check

lint:
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
fuzz:
	$(CARGO) test $(FUZZ_PROFILE) -p weir-protocol $(FUZZ_TESTS) --no-run
	WEIR_FUZZ_CASES=$(FUZZ_CASES) WEIR_FUZZ_SECONDS=$(FUZZ_SECONDS) timeout $$(( 10 * $(FUZZ_SECONDS) + 600 )) \
		$(CARGO) test $(FUZZ_PROFILE) -p weir-protocol $(FUZZ_TESTS) -- --nocapture

# Throughput/latency benchmark against a release build; writes BENCHMARKS.md.
# Not part of `make test`. Installs iperf3 and librdkafka-dev, builds rdkafka_performance into bench/.build/.
bench:
	CARGO_TARGET_DIR=$(abspath $(TARGET_DIR)) bench/run.sh
