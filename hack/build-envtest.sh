#!/usr/bin/env bash
# Builds the envtest control plane (kube-apiserver and etcd) from Go modules
# into $1 (default bin/k8s), skipping binaries that are already there.
# Prebuilt envtest archives are not downloadable everywhere; the Go module
# proxy is, and these two builds need nothing else.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/k8s}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ ! -x "$out/etcd" ]; then
  echo "building etcd into $out (about a minute, once)"
  (cd "$root/hack/envtest/etcd" && go build -trimpath -o "$out/etcd.tmp" . && mv "$out/etcd.tmp" "$out/etcd")
fi
if [ ! -x "$out/kube-apiserver" ]; then
  echo "building kube-apiserver into $out (about five minutes, once)"
  (cd "$root/hack/envtest/kube-apiserver" && go build -trimpath -o "$out/kube-apiserver.tmp" k8s.io/kubernetes/cmd/kube-apiserver && mv "$out/kube-apiserver.tmp" "$out/kube-apiserver")
fi
