#!/usr/bin/env bash
# Builds versitygw, the S3 server the object-storage tests run against, from
# Go modules into $1 (default bin/s3), skipping the build when the binary for
# this version is already there. Like hack/build-envtest.sh, it needs only the
# Go module proxy. `go install module@version` builds with versitygw's own
# go.mod and go.sum, so the project's go.mod stays clean.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/s3}
version=${VERSITYGW_VERSION:-v1.8.0}
mkdir -p "$out"
out=$(cd "$out" && pwd)

if [ -x "$out/versitygw" ] && [ "$(cat "$out/versitygw.version" 2>/dev/null)" = "$version" ]; then
  exit 0
fi
echo "building versitygw $version into $out (about five minutes cold, once)"
tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
GOBIN="$tmp" go install -trimpath \
  -ldflags "-s -w -X main.Version=$version -X main.Build=gomod" \
  "github.com/versity/versitygw/cmd/versitygw@$version"
# Rename last, so an interrupted build never leaves a binary that looks done.
mv "$tmp/versitygw" "$out/versitygw"
echo "$version" >"$out/versitygw.version"
