#!/usr/bin/env bash
# Builds the sarama matrix scenario offline: Debian's Go (golang-go) and Debian's sarama
# (golang-github-shopify-sarama-dev) from /usr/share/gocode, GOPATH mode, no module proxy.
# Output: compat-tests/.build/sarama-matrix (rebuilt only when main.go is newer).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="$here/../../.build"
mkdir -p "$out"
bin="$out/sarama-matrix"
if [ -x "$bin" ] && [ "$bin" -nt "$here/main.go" ]; then
  exit 0
fi
export GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off GOTOOLCHAIN=local
export GOCACHE="$out/go-cache"
cd "$here"
go build -o "$bin.tmp" main.go
mv "$bin.tmp" "$bin"
