#!/usr/bin/env bash
# Cross-builds kubectl-ota for every platform of the Krew manifest into
# release archives bin/krew/kubectl-ota_VERSION_OS_ARCH.tar.gz, and writes
# bin/krew/ota.yaml from hack/krew/ota.yaml.tmpl with their SHA-256. Upload
# the archives to the GitHub release VERSION, then submit ota.yaml to
# krew-index (or install it locally: kubectl krew install --manifest
# bin/krew/ota.yaml --archive bin/krew/kubectl-ota_VERSION_linux_amd64.tar.gz).
#
# Usage: hack/krew-manifest.sh VERSION   (a tag such as v0.4.0)
set -euo pipefail

platforms=(linux/amd64 linux/arm64 darwin/amd64 darwin/arm64 windows/amd64)

version=${1:-}
if ! [[ $version =~ ^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$ ]]; then
  echo "usage: $0 VERSION (a release tag such as v0.4.0; Krew wants a v-prefixed semantic version)" >&2
  exit 2
fi

root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/bin/krew
rm -rf "$out"
mkdir -p "$out"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

sha256() {
  if command -v sha256sum >/dev/null; then sha256sum "$1" | cut -d' ' -f1; else shasum -a 256 "$1" | cut -d' ' -f1; fi
}

subst=(-e "s|{{VERSION}}|$version|g")
for platform in "${platforms[@]}"; do
  os=${platform%/*}
  arch=${platform#*/}
  bin=kubectl-ota
  if [ "$os" = windows ]; then bin=kubectl-ota.exe; fi
  dir=$stage/${os}_$arch
  mkdir -p "$dir"
  echo "building $os/$arch" >&2
  (cd "$root" && CGO_ENABLED=0 GOOS=$os GOARCH=$arch go build -trimpath -ldflags "-s -w" -o "$dir/$bin" ./cmd/kubectl-ota)
  files=("$bin")
  if [ -f "$root/LICENSE" ]; then
    cp "$root/LICENSE" "$dir/"
    files+=(LICENSE)
  fi
  archive=kubectl-ota_${version}_${os}_${arch}.tar.gz
  tar -C "$dir" -czf "$out/$archive" "${files[@]}"
  key=$(echo "SHA256_${os}_${arch}" | tr '[:lower:]' '[:upper:]')
  subst+=(-e "s|{{$key}}|$(sha256 "$out/$archive")|g")
done

sed "${subst[@]}" "$root/hack/krew/ota.yaml.tmpl" >"$out/ota.yaml"
if grep -q '{{' "$out/ota.yaml"; then
  echo "unfilled placeholders in $out/ota.yaml:" >&2
  grep -n '{{' "$out/ota.yaml" >&2
  exit 1
fi
echo "$out/ota.yaml" >&2
ls -l "$out" >&2
