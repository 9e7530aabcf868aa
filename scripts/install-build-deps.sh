#!/usr/bin/env bash
# Installs the system packages the workspace's build needs besides the Rust toolchain, on
# Debian/Ubuntu:
#   - librocksdb-dev: the RocksDB that weir-controller's metadata store links (the Makefile
#     points ROCKSDB_LIB_DIR at it, so the rocksdb crate does not compile RocksDB's C++ sources);
#   - libclang-dev: librocksdb-sys's build script runs bindgen, which needs libclang;
#   - build-essential when there is no C compiler (cc), which rustc links with.
# Idempotent, and a quick no-op when all are there: installs only the packages `dpkg -s` does
# not report installed, and runs `apt-get update` only when that install fails (no or stale
# package lists, as on a fresh machine). Without apt-get it installs nothing; the rocksdb crate
# then builds RocksDB from source (needs a C++ compiler and clang). Run by `make build-deps`,
# which every make target that compiles depends on, and by scripts/install-test-deps.sh.
# As root, or through sudo.
set -euo pipefail

log() { printf 'install-build-deps: %s\n' "$*" >&2; }

if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
  log "no apt-get/dpkg: installing nothing (RocksDB will be compiled from source)"
  exit 0
fi

installed() { dpkg -s "$1" 2>/dev/null | grep -q '^Status: install ok installed$'; }

missing=()
for pkg in librocksdb-dev libclang-dev; do
  installed "$pkg" || missing+=("$pkg")
done
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if ! command -v sudo >/dev/null 2>&1; then
    log "missing ${missing[*]}: run as root (or install sudo)"
    exit 1
  fi
  SUDO="sudo"
fi
apt() { $SUDO env DEBIAN_FRONTEND=noninteractive apt-get "$@"; }

log "apt-get install ${missing[*]}"
if ! apt install -y -qq --no-install-recommends "${missing[@]}"; then
  log "apt-get install failed: apt-get update, then install again"
  apt update -qq
  apt install -y -qq --no-install-recommends "${missing[@]}"
fi
