#!/usr/bin/env bash
# Fetches and unpacks Debian's mbedtls source package, the version of the
# installed libmbedtls-dev (2.28.x), into OUTDIR for the Cortex-M4 build of
# mcu/ (mcu/target/cortex-m4/cortex-m4.mk). Prints the path of the unpacked
# tree. Skips the work when OUTDIR already holds it (a stamp file).
#
#   hack/mcu-mbedtls-source.sh OUTDIR
#
# The machine's apt setup is left alone: the deb-src lines (derived from the
# machine's deb lines for its Debian suite) and the package lists live in
# OUTDIR/.apt, passed to apt-get with -o options. Needs apt-get and
# dpkg-source (dpkg-dev; hack/ensure-mcu-tools.sh installs it); no root.
set -euo pipefail

tag=mcu-mbedtls-source
if [ $# -ne 1 ]; then
  echo "usage: $0 OUTDIR" >&2
  exit 2
fi
for tool in apt-get dpkg-query dpkg-source; do
  if ! command -v "$tool" >/dev/null; then
    echo "$tag: $tool is missing (run hack/ensure-mcu-tools.sh)" >&2
    exit 1
  fi
done

mkdir -p "$1"
out=$(cd "$1" && pwd)

# The source version of the installed headers, so host and device builds
# use the same mbedTLS.
version=$(dpkg-query -W -f='${source:Version}' libmbedtls-dev 2>/dev/null || true)
if [ -z "$version" ]; then
  echo "$tag: libmbedtls-dev is not installed (run hack/ensure-mcu-tools.sh)" >&2
  exit 1
fi
upstream=${version#*:}
upstream=${upstream%-*}
tree=$out/mbedtls-$upstream
stamp=$out/.stamp-mbedtls-$version
if [ -f "$stamp" ] && [ -f "$tree/include/mbedtls/version.h" ]; then
  echo "$tree"
  exit 0
fi

codename=
if [ -r /etc/os-release ]; then
  codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
fi
if [ -z "$codename" ]; then
  echo "$tag: no VERSION_CODENAME in /etc/os-release: cannot tell the Debian suite" >&2
  exit 1
fi

apt=$out/.apt
rm -rf "$apt"
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/src"

# One deb-src line per deb entry of the machine's suite (codename,
# codename-updates, codename-security), from one-line and deb822 files.
# Other repositories (third-party, other suites) are left out.
sources() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -r "$f" ] || continue
    awk -v cn="$codename" '
      /^[[:space:]]*deb[[:space:]]/ {
        opts = ""; i = 2
        if ($2 ~ /^\[/) { opts = $2; i = 3; while ($i !~ /\]$/ && opts !~ /\]$/) { opts = opts " " $i; i++ } if (opts !~ /\]$/) { opts = opts " " $i } i++ }
        uri = $i; suite = $(i + 1); comps = ""
        for (j = i + 2; j <= NF; j++) comps = comps " " $j
        if (suite == cn || index(suite, cn "-") == 1) print "deb-src " (opts == "" ? "" : opts " ") uri " " suite comps
      }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -r "$f" ] || continue
    awk -v cn="$codename" '
      function flush(   n, s, k, m, u, key) {
        if (types ~ /(^|[[:space:]])deb([[:space:]]|$)/ && enabled != "no") {
          n = split(suites, s, /[[:space:]]+/); m = split(uris, u, /[[:space:]]+/)
          for (k = 1; k <= n; k++) {
            if (s[k] == "" || !(s[k] == cn || index(s[k], cn "-") == 1)) continue
            for (key = 1; key <= m; key++) if (u[key] != "")
              print "deb-src " (signed == "" ? "" : "[signed-by=" signed "] ") u[key] " " s[k] " " comps
          }
        }
        types = uris = suites = comps = signed = enabled = ""
      }
      /^[[:space:]]*#/ { next }
      /^[[:space:]]*$/ { flush(); next }
      {
        key = tolower($1); sub(/:$/, "", key); val = $0; sub(/^[^:]*:[[:space:]]*/, "", val)
        if (key == "types") types = val
        else if (key == "uris") uris = val
        else if (key == "suites") suites = val
        else if (key == "components") comps = val
        else if (key == "signed-by") signed = val
        else if (key == "enabled") enabled = tolower(val)
      }
      END { flush() }' "$f"
  done
}
sources | sort -u >"$apt/sources.list"
if [ ! -s "$apt/sources.list" ]; then
  echo "$tag: no deb entry for suite $codename in /etc/apt/sources.list or /etc/apt/sources.list.d" >&2
  exit 1
fi

aptopts=(
  -q
  -o "Dir::Etc::SourceList=$apt/sources.list"
  -o Dir::Etc::SourceParts=/dev/null
  -o "Dir::State::Lists=$apt/lists"
  -o "Dir::Cache=$apt/cache"
  -o Dir::Cache::pkgcache=
  -o Dir::Cache::srcpkgcache=
)
if [ "$(id -u)" -eq 0 ]; then
  # apt's _apt user cannot write into the private directory; as root the
  # download runs unsandboxed either way, this only silences the warning.
  aptopts+=(-o APT::Sandbox::User=root)
fi

echo "$tag: fetching mbedtls $version source (deb-src of $(awk '{print $(NF-1)}' "$apt/sources.list" | sort -u | paste -sd ' '))" >&2
if ! apt-get "${aptopts[@]}" update >"$apt/update.log" 2>&1; then
  echo "$tag: apt-get update with $apt/sources.list failed:" >&2
  cat "$apt/update.log" >&2
  exit 1
fi
if ! (cd "$apt/src" && apt-get "${aptopts[@]}" source --download-only "mbedtls=$version") >"$apt/source.log" 2>&1; then
  echo "$tag: apt-get source mbedtls=$version failed:" >&2
  cat "$apt/source.log" >&2
  exit 1
fi
dsc=$(ls "$apt"/src/mbedtls_*.dsc)

# Unpack beside the final place and rename, so an interrupted run never
# leaves a tree that looks complete.
rm -rf "$tree" "$tree.tmp"
dpkg-source -q -x "$dsc" "$tree.tmp" >"$apt/unpack.log" 2>&1 || {
  echo "$tag: dpkg-source -x $dsc failed:" >&2
  cat "$apt/unpack.log" >&2
  exit 1
}
mv "$tree.tmp" "$tree"
# dpkg-source leaves a copy of the upstream tarball beside the tree.
rm -f "$out"/mbedtls_*.orig.tar.*
if [ ! -f "$tree/include/mbedtls/version.h" ]; then
  echo "$tag: $tree has no include/mbedtls/version.h" >&2
  exit 1
fi
rm -f "$out"/.stamp-mbedtls-*
rm -rf "$apt/lists" "$apt/cache" "$apt/src"
touch "$stamp"
echo "$tree"
