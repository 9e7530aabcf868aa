#!/usr/bin/env bash
# Installs everything `make test` / `make compat` need besides the Rust toolchain:
#   - the build's system packages (librocksdb-dev, libclang-dev, a C compiler), through
#     scripts/install-build-deps.sh;
#   - Debian packages: kcat, iproute2 (`ip netns`: the chaos suite's network
#     partitions), python3 (+ python3-venv when `python3 -m venv` cannot work),
#     nodejs + npm when missing, golang-go + golang-github-shopify-sarama-dev (the sarama
#     client of compat-tests/matrix), and the Java Kafka tools' dependencies
#     (../shared/kafka-tools/install-deps.sh, beside this repository);
#   - .venv with compat-tests/requirements.txt;
#   - compat-tests/node_modules from compat-tests/package-lock.json (KafkaJS, kafkajs-snappy).
# Idempotent: runs `apt-get update` only when a package is missing, reinstalls the venv
# or node_modules only when their requirement files changed. Works as root on a fresh
# Debian 12 (uses sudo otherwise).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

log() { printf 'install-test-deps: %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

apt_updated=0
apt_install() {
  log "apt-get install $*"
  if [ "$apt_updated" -eq 0 ]; then
    $SUDO apt-get update -qq
    apt_updated=1
  fi
  $SUDO apt-get install -y -qq --no-install-recommends "$@"
}

# What the workspace's build links against (RocksDB, libclang for bindgen, a C compiler).
"$repo/scripts/install-build-deps.sh"

missing=()
command -v kcat >/dev/null 2>&1 || missing+=(kcat)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
if ! command -v python3 >/dev/null 2>&1; then
  missing+=(python3 python3-venv)
elif ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
  # Debian's python3 ships venv without ensurepip; python3-venv brings it.
  missing+=(python3-venv)
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  missing+=(nodejs npm)
fi
# Go and Debian's sarama for the client matrix (compat-tests/matrix/sarama, built offline in
# GOPATH mode against /usr/share/gocode; no module proxy). The package pulls in its codecs'
# sources and libzstd-dev (cgo zstd).
command -v go >/dev/null 2>&1 || missing+=(golang-go)
[ -d /usr/share/gocode/src/github.com/Shopify/sarama ] || missing+=(golang-github-shopify-sarama-dev)
command -v make >/dev/null 2>&1 || missing+=(make)

if [ "${#missing[@]}" -gt 0 ]; then
  apt_install "${missing[@]}"
fi

# Java tools (kafka-topics.sh, kafka-console-*.sh, ...). shared/ sits beside the repo.
tools_deps="$repo/../shared/kafka-tools/install-deps.sh"
if [ -f "$tools_deps" ]; then
  bash "$tools_deps"
else
  log "warning: $tools_deps not found; Java tool tests will be skipped"
fi

# Python virtualenv for pytest and the Python Kafka clients.
req="compat-tests/requirements.txt"
req_sum="$(sha256sum "$req" | cut -d' ' -f1)"
stamp=".venv/.requirements.sha256"
if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import sys' >/dev/null 2>&1; then
  log "creating .venv"
  rm -rf .venv
  if ! python3 -m venv .venv; then
    # e.g. Debian's python3 without python3-venv (ensurepip missing).
    rm -rf .venv
    apt_install python3-venv
    python3 -m venv .venv
  fi
fi
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$req_sum" ]; then
  log "pip install -r $req"
  .venv/bin/python -m pip install -q --disable-pip-version-check -r "$req"
  echo "$req_sum" >"$stamp"
fi

# KafkaJS.
lock="compat-tests/package-lock.json"
lock_sum="$(cat compat-tests/package.json "$lock" | sha256sum | cut -d' ' -f1)"
nstamp="compat-tests/node_modules/.weir-lock.sha256"
if [ "$(cat "$nstamp" 2>/dev/null || true)" != "$lock_sum" ]; then
  log "npm ci in compat-tests/"
  (cd compat-tests && npm ci --no-audit --no-fund --loglevel=error)
  echo "$lock_sum" >"$nstamp"
fi

log "ok"
