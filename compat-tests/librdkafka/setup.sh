#!/usr/bin/env bash
# Fetches librdkafka 2.8.0 (with its test suite) from Debian's source package and builds
# the library and the suite's test-runner into compat-tests/librdkafka/.build/.
#
#   - adds a deb-src entry for Debian's trixie suite (bookworm only has 2.0.2), on the same
#     mirror as this machine's existing apt entries (read at run time from
#     /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list); idempotent;
#   - `apt-get source librdkafka=2.8.0-1` into .build/src/;
#   - installs the few -dev packages the build needs (only when missing);
#   - ./configure && make (library), then make -C tests build (test-runner).
# Every step is skipped when its output is already there, so a second run is a no-op.
# Prints the path of the source tree on stdout.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="$HERE/.build"
VERSION="${LIBRDKAFKA_VERSION:-2.8.0}"
DEB_VERSION="${LIBRDKAFKA_DEB_VERSION:-$VERSION-1}"
SUITE="${LIBRDKAFKA_DEB_SUITE:-trixie}"
SRC="$BUILD/src/librdkafka-$VERSION"
# Bump BUILD_ID when the build recipe below changes: the next run rebuilds.
BUILD_ID=2
STAMP="$BUILD/built-$DEB_VERSION-$BUILD_ID.stamp"
LIST=/etc/apt/sources.list.d/weir-librdkafka-src.sources

log() { printf 'librdkafka-setup: %s\n' "$*" >&2; }
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive

if [ -f "$STAMP" ] && [ -x "$SRC/tests/test-runner" ]; then
  echo "$SRC"
  exit 0
fi
mkdir -p "$BUILD/src"

# ---- apt: build dependencies ----------------------------------------------------
apt_updated=0
apt_update() {
  if [ "$apt_updated" -eq 0 ]; then
    log "apt-get update"
    # Another apt may hold the locks (other test-dep installers): wait for it.
    $SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
    apt_updated=1
  fi
}
missing=()
# rapidjson-dev: tests 0098, 0101, 0110 are skipped without it.
for p in dpkg-dev build-essential python3 zlib1g-dev libzstd-dev liblz4-dev libssl-dev libsasl2-dev rapidjson-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  apt_update
  log "apt-get install ${missing[*]}"
  $SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${missing[@]}"
fi

# ---- source package ---------------------------------------------------------------
# The mirror: the first URI of an existing entry for Debian's main archive (not -security).
mirror_uri() {
  local f uri
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && [ "$f" != "$LIST" ] || continue
    uri="$(awk '
      /^[[:space:]]*$/ { if (u != "" && s ~ /(^| )[a-z]+( |$)/ && u !~ /security/) { print u; exit } u=""; s=""; next }
      /^URIs:/ { u=$2 }
      /^Suites:/ { $1=""; s=$0 }
      END { if (u != "" && u !~ /security/) print u }' "$f" | head -n1)"
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    uri="$(awk '$1 ~ /^deb(-src)?$/ { for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { if ($i !~ /security/) { print $i; exit } break } }' "$f")"
    if [ -n "$uri" ]; then echo "$uri"; return; fi
  done
}

if [ ! -f "$SRC/tests/test.c" ]; then
  uri="$(mirror_uri)"
  [ -n "$uri" ] || { log "no Debian mirror found in /etc/apt/sources.list*"; exit 1; }
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  want="Types: deb-src
URIs: $uri
Suites: $SUITE
Components: main
Signed-By: $keyring"
  if [ "$(cat "$LIST" 2>/dev/null || true)" != "$want" ]; then
    log "adding deb-src $SUITE on $uri ($LIST)"
    printf '%s\n' "$want" | $SUDO tee "$LIST" >/dev/null
    apt_updated=0
  fi
  if ! apt-cache showsrc "librdkafka=$DEB_VERSION" 2>/dev/null | grep -q "^Version: $DEB_VERSION\$"; then
    apt_updated=0
    apt_update
  fi
  log "apt-get source librdkafka=$DEB_VERSION"
  rm -rf "$BUILD/src"
  mkdir -p "$BUILD/src"
  (cd "$BUILD/src" && apt-get source -qq "librdkafka=$DEB_VERSION" >&2)
  [ -f "$SRC/tests/test.c" ] || { log "no $SRC/tests/test.c after apt-get source"; exit 1; }
fi

# ---- build -----------------------------------------------------------------------
jobs="$(nproc 2>/dev/null || echo 2)"
cd "$SRC"
# No stamp for this BUILD_ID: configure afresh, rebuild what changed, relink the runner.
log "configure + make (library)"
# Only system libraries: no --install-deps (that would download); no curl (OIDC) needed.
./configure --disable-curl --disable-gssapi >&2
make -j"$jobs" libs >&2
log "make -C tests build (test-runner)"
make -C tests clean >&2 || true
make -C tests -j"$jobs" build >&2
rm -f "$BUILD"/built-*.stamp
touch "$STAMP"
echo "$SRC"
