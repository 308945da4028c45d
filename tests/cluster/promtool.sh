#!/usr/bin/env bash
# Builds promtool (Prometheus' rule checker) from the Go module proxy (module ./promtool),
# into a cache directory named by a hash of what decides the binary, as build.sh does for
# the control plane; apart from it, so that neither invalidates the other's cache. A cold
# build takes about twelve minutes on two cores (mostly Prometheus' dependencies).
#
# The directory is the LAST line of stdout; progress goes to stderr.
#   TESTCLUSTER_CACHE   base directory (default ${XDG_CACHE_HOME:-~/.cache}/trustwire-testcluster)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/promtool"

export GOTOOLCHAIN=local GOWORK=off CGO_ENABLED=0 GOFLAGS="-trimpath -mod=readonly"
key=$( { go version; cat go.mod go.sum ../promtool.sh; } | sha256sum | cut -c1-16)
out="${TESTCLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trustwire-testcluster}/promtool-$key"
if [[ ! -x "$out/promtool" ]]; then
  echo "[promtool.sh $(date +%T)] building promtool into $out" >&2
  mkdir -p "$out.partial.$$"
  trap 'rm -rf "$out.partial.$$"' EXIT
  go build -ldflags "-s -w" -o "$out.partial.$$/promtool" github.com/prometheus/prometheus/cmd/promtool >&2
  rm -rf "$out"; mv "$out.partial.$$" "$out"; trap - EXIT
fi
echo "$out"
