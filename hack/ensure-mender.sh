#!/usr/bin/env bash
# Makes Debian's Mender client 3.4 (`mender`, package mender-client) and
# mender-artifact 3.9 runnable for the Mender device API tests (package
# internal/mendertest), without installing anything: the .debs and the
# shared libraries missing on this machine are fetched with `apt-get
# download` and unpacked with `dpkg-deb -x` into $1/root (default
# bin/mender), which also holds the client's update modules
# (usr/share/mender/modules/v3). The wrappers $1/mender and
# $1/mender-artifact run the binaries with the LD_LIBRARY_PATH they need
# (hack/lib/deb-tool.sh). The packages' other dependencies (parted,
# dosfstools, ...) are not needed. Skips everything when both wrappers
# already run. Prints the output directory.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib/deb-tool.sh"
out=${1:-$root/bin/mender}
mkdir -p "$out"
out=$(cd "$out" && pwd)

# name of the wrapper, package, binary in the tree
tools=(
  "mender mender-client usr/bin/mender"
  "mender-artifact mender-artifact usr/bin/mender-artifact"
)

done=1
for t in "${tools[@]}"; do
  read -r name _ _ <<<"$t"
  if ! [ -x "$out/$name" ] || ! "$out/$name" --version >/dev/null 2>&1; then
    done=
  fi
done
if [ -n "$done" ] && [ -d "$out/root/usr/share/mender/modules/v3" ]; then
  echo "$out"
  exit 0
fi

deb_tag=ensure-mender
deb_require_tools "or unpack mender-client 3.4 and mender-artifact 3.9 into $out/root and write the wrappers"
deb_init ensure-mender "$out"
pkgs=() bins=()
for t in "${tools[@]}"; do
  read -r name pkg bin <<<"$t"
  pkgs+=("$pkg")
  bins+=("$bin")
  # A wrapper left from an earlier run must not look done while the tree
  # under it is replaced.
  rm -f "$out/$name"
done
echo "ensure-mender: downloading ${pkgs[*]} and their missing libraries into $out" >&2
deb_fetch "${pkgs[@]}"
deb_unpack
deb_check_libs "${bins[@]}"
if [ ! -d "$deb_tmp/root/usr/share/mender/modules/v3" ]; then
  echo "ensure-mender: mender-client has no usr/share/mender/modules/v3" >&2
  exit 1
fi
deb_install_tree "$out"
for pkg in "${pkgs[@]}"; do
  echo "$pkg $(deb_version "$pkg")"
done >"$out/versions"
for t in "${tools[@]}"; do
  read -r name pkg bin <<<"$t"
  deb_write_wrapper "$out/$name" "$(deb_exec_body "$bin")"
done
echo "$out"
