#!/usr/bin/env bash
# Builds the test control plane from the Go module proxy: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kubectl (module ./go.mod, k8s.io/kubernetes
# with its staging modules replaced by their published tags), kwok (./kwok) and the kstatus
# command (./kstatus), into a cache directory named by a hash of everything that decides
# the binaries. A second run with nothing changed prints the same directory at once.
#
# The directory is the LAST line of stdout; progress goes to stderr.
#   TESTCLUSTER_CACHE   base directory (default ${XDG_CACHE_HOME:-~/.cache}/trustwire-testcluster)
#   TESTCLUSTER_FORCE=1 rebuild even when the cache entry is complete
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here"

export GOTOOLCHAIN=local           # never fetch another Go toolchain
export GOWORK=off                  # ignore a go.work above this directory
export CGO_ENABLED=0               # static binaries, as upstream builds them
export GOFLAGS="-trimpath -mod=readonly"   # a build never rewrites go.mod/go.sum

BINARIES=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kwok kstatus)
key=$( { go version; cat go.mod go.sum kwok/go.mod kwok/go.sum kstatus/go.mod kstatus/go.sum \
         kstatus/main.go build.sh; } | sha256sum | cut -c1-16)
base=${TESTCLUSTER_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/trustwire-testcluster}
out="$base/$key"
complete() { for b in "${BINARIES[@]}"; do [[ -x "$1/$b" ]] || return 1; done; [[ -f "$1/kwok-stages.yaml" ]]; }
if [[ -z "${TESTCLUSTER_FORCE:-}" ]] && complete "$out"; then
  echo "$out"; exit 0
fi
tmp="$out.partial.$$"
rm -rf "$tmp"; mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
log() { echo "[build.sh $(date +%T)] $*" >&2; }

# Version ldflags: without them /version and --version say v0.0.0-master.
kver=$(go list -m -f '{{.Version}}' k8s.io/kubernetes)
kmaj=$(echo "$kver" | sed -E 's/^v([0-9]+)\..*/\1/')
kmin=$(echo "$kver" | sed -E 's/^v[0-9]+\.([0-9]+)\..*/\1/')
vflags=""
for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  vflags+=" -X $p.gitVersion=$kver -X $p.gitMajor=$kmaj -X $p.gitMinor=$kmin -X $p.gitTreeState=clean"
done

log "downloading modules"
go mod download >&2
( cd kwok && go mod download >&2 )
( cd kstatus && go mod download >&2 )

log "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl ($kver) and etcd"
# One invocation: the packages share one compile graph.
go build -ldflags "-s -w $vflags" -o "$tmp/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl >&2
# go.etcd.io/etcd/server/v3 is etcd's main package.
go build -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 >&2

log "building kwok and kstatus"
( cd kwok && go build -ldflags "-s -w" -o "$tmp/kwok" sigs.k8s.io/kwok/cmd/kwok >&2 )
( cd kstatus && go build -ldflags "-s -w" -o "$tmp/kstatus" . >&2 )

# kwok >= 0.8 ships no built-in stages: take the "fast" node and pod stages from its module.
kdir=$(cd kwok && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok)
for f in kustomize/stage/node/fast/node-initialize.yaml \
         kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
         kustomize/stage/pod/fast/pod-ready.yaml \
         kustomize/stage/pod/fast/pod-complete.yaml \
         kustomize/stage/pod/fast/pod-delete.yaml; do
  echo "---"; cat "$kdir/$f"
done > "$tmp/kwok-stages.yaml"

"$tmp/kube-apiserver" --version >&2
rm -rf "$out"; mv "$tmp" "$out"; trap - EXIT
log "built into $out"
echo "$out"
