#!/usr/bin/env bash
# Makes promtool (Debian's prometheus package) runnable for the monitoring
# tests (package config: `promtool check rules` and `promtool test rules`
# on config/components/monitoring), without installing anything: the .deb
# and the shared libraries missing on this machine are fetched with
# `apt-get download` and unpacked with `dpkg-deb -x` into $1/root (default
# bin/promtool); the wrapper $1/promtool runs it with the LD_LIBRARY_PATH
# it needs (hack/lib/deb-tool.sh). Prometheus itself is not run. Skips
# everything when the wrapper already runs. Prints the wrapper's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib/deb-tool.sh"
out=${1:-$root/bin/promtool}
pkg=prometheus
bin=usr/bin/promtool
mkdir -p "$out"
out=$(cd "$out" && pwd)
wrapper=$out/promtool

if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then
  echo "$wrapper"
  exit 0
fi

deb_tag=ensure-promtool
deb_require_tools "or put a promtool binary at $wrapper"
deb_init ensure-promtool "$out"
# A wrapper left from an earlier run must not look done while the tree
# under it is replaced.
rm -f "$wrapper"
echo "ensure-promtool: downloading $pkg and its missing libraries into $out" >&2
deb_fetch "$pkg"
deb_unpack
deb_check_libs "$bin"
# Only promtool and the library directories are kept: the server, its web
# assets and their libjs-* dependencies are not needed (about 270 MB).
keep=$deb_tmp/keep
mkdir -p "$keep/$(dirname "$bin")"
mv "$deb_tmp/root/$bin" "$keep/$bin"
for d in $deb_libdirs; do
  mkdir -p "$keep/$d"
  cp -a "$deb_tmp/root/$d/." "$keep/$d/"
done
rm -rf "$deb_tmp/root"
mv "$keep" "$deb_tmp/root"
deb_install_tree "$out"
deb_version "$pkg" >"$out/version"
deb_write_wrapper "$wrapper" "$(deb_exec_body "$bin")"
echo "$wrapper"
