#!/usr/bin/env bash
# Makes the SWUpdate client (Debian's swupdate package) runnable for the DDI
# tests, without installing anything: $1 (default bin/swupdate) gets a
# wrapper `run` that execs the binary. When /usr/bin/swupdate works, the
# wrapper uses it; otherwise the .deb and the shared libraries missing on
# this machine are fetched with `apt-get download` (no root needed) and
# unpacked with `dpkg-deb -x` (no maintainer scripts run), and the wrapper
# sets LD_LIBRARY_PATH (hack/lib/deb-tool.sh). Skips everything when the
# wrapper already runs. Prints the wrapper's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib/deb-tool.sh"
out=${1:-$root/bin/swupdate}
pkg=swupdate
bin=usr/bin/swupdate
mkdir -p "$out"
out=$(cd "$out" && pwd)
wrapper=$out/run

if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then
  echo "$wrapper"
  exit 0
fi

deb_tag=ensure-swupdate
if [ -x /usr/bin/swupdate ] && /usr/bin/swupdate --version >/dev/null 2>&1; then
  deb_write_wrapper "$wrapper" 'exec /usr/bin/swupdate "$@"'
  echo "$wrapper"
  exit 0
fi

deb_require_tools "or install swupdate 2022.12 as /usr/bin/swupdate"
deb_init ensure-swupdate "$out"
echo "ensure-swupdate: downloading $pkg and its missing libraries into $out" >&2
deb_fetch "$pkg"
deb_unpack
deb_check_libs "$bin"
deb_install_tree "$out"
deb_version "$pkg" >"$out/version"
deb_write_wrapper "$wrapper" "$(deb_exec_body "$bin")"
echo "$wrapper"
