#!/usr/bin/env bash
# Builds the chart renderer offline against Debian's Go packages
# (apt: golang-go golang-github-masterminds-sprig-dev). Prints the binary's path.
# Usage: deploy/render/build.sh [output-path]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-${TMPDIR:-/tmp}/shunt-render}"
command -v go >/dev/null || { echo "go not found: apt-get install golang-go golang-github-masterminds-sprig-dev" >&2; exit 1; }
[ -d /usr/share/gocode/src/github.com/Masterminds/sprig ] || { echo "sprig not found: apt-get install golang-github-masterminds-sprig-dev" >&2; exit 1; }
# GOPATH mode against /usr/share/gocode: no module download, no network.
export GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= GOPROXY=off
export GOCACHE="${GOCACHE:-${TMPDIR:-/tmp}/shunt-go-cache}"
(cd "$here" && go build -o "$out" .)
echo "$out"
