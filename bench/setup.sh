#!/usr/bin/env bash
# Installs what `make bench` needs (Debian 12) and builds librdkafka's
# rdkafka_performance into bench/.build/. Idempotent: a second run does nothing.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
BUILD="$HERE/.build"
PERF_BIN="$BUILD/rdkafka_performance"
mkdir -p "$BUILD"

SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

need_pkgs=()
for p in build-essential dpkg-dev zlib1g-dev libzstd-dev liblz4-dev librdkafka-dev iperf3; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need_pkgs+=("$p")
done
if [ ${#need_pkgs[@]} -gt 0 ]; then
  echo "bench/setup: installing ${need_pkgs[*]}"
  # iperf3's postinst asks whether to start a daemon: answer no, non-interactively.
  echo "iperf3 iperf3/start_daemon boolean false" | $SUDO debconf-set-selections || true
  timeout 300 $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive timeout 600 $SUDO apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}"
fi

[ -x "$PERF_BIN" ] && exit 0

# Debian ships librdkafka's library but not its example programs: take the
# example's source from the source package (same version as librdkafka-dev).
SRC_DIR="$(ls -d "$BUILD"/librdkafka-*/ 2>/dev/null | head -1 || true)"
if [ -z "$SRC_DIR" ]; then
  SOURCES=/etc/apt/sources.list.d/debian.sources
  if ! grep -rqsE '^(Types:.*deb-src|deb-src )' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    if [ -f "$SOURCES" ] && grep -q '^Types: deb$' "$SOURCES"; then
      echo "bench/setup: adding deb-src to $SOURCES"
      $SUDO sed -i 's/^Types: deb$/Types: deb deb-src/' "$SOURCES"
    else
      echo "bench/setup: no deb-src entry and no $SOURCES to extend; add one by hand" >&2
      exit 1
    fi
    timeout 300 $SUDO apt-get update -qq
  fi
  (cd "$BUILD" && timeout 600 apt-get source --download-only librdkafka >/dev/null \
     && dpkg-source --no-check -x librdkafka_*.dsc >/dev/null)
  SRC_DIR="$(ls -d "$BUILD"/librdkafka-*/ | head -1)"
fi

# rdkafka_performance.c includes librdkafka's internal rd.h, which needs the
# config.h that ./configure writes (a few seconds; librdkafka itself is not
# built: the example links against the system librdkafka of the same version).
if [ ! -f "${SRC_DIR}config.h" ]; then
  echo "bench/setup: configuring ${SRC_DIR} (for config.h)"
  (cd "$SRC_DIR" && timeout 300 ./configure --disable-ssl --disable-sasl --disable-gssapi \
     --disable-curl >"$BUILD/configure.log" 2>&1) || { tail -20 "$BUILD/configure.log" >&2; exit 1; }
fi
echo "bench/setup: building rdkafka_performance against the system librdkafka $(pkg-config --modversion rdkafka)"
timeout 600 cc -O2 -w -o "$PERF_BIN" "${SRC_DIR}examples/rdkafka_performance.c" \
  -I"${SRC_DIR}src" $(pkg-config --cflags --libs rdkafka) -lm -lpthread
