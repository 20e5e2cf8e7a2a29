#!/usr/bin/env bash
# Makes the SWUpdate client (Debian's swupdate package) runnable for the DDI
# tests, without installing anything: $1 (default bin/swupdate) gets a
# wrapper `run` that execs the binary. When /usr/bin/swupdate works, the
# wrapper uses it; otherwise the .deb and the shared libraries missing on
# this machine are fetched with `apt-get download` (no root needed) and
# unpacked with `dpkg-deb -x` (no maintainer scripts run), and the wrapper
# sets LD_LIBRARY_PATH. Skips everything when the wrapper already runs.
# Prints the wrapper's path.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/swupdate}
pkg=swupdate
mkdir -p "$out"
out=$(cd "$out" && pwd)
wrapper=$out/run

if [ -x "$wrapper" ] && "$wrapper" --version >/dev/null 2>&1; then
  echo "$wrapper"
  exit 0
fi

# The wrapper is written last, through a rename, so an interrupted run never
# leaves one that looks done.
write_wrapper() { # $1: wrapper body
  printf '%s\n' "#!/bin/sh" "# Written by hack/ensure-swupdate.sh." "$1" >"$wrapper.tmp"
  chmod 0755 "$wrapper.tmp"
  mv "$wrapper.tmp" "$wrapper"
  if ! "$wrapper" --version >/dev/null 2>&1; then
    echo "ensure-swupdate: $wrapper does not run:" >&2
    "$wrapper" --version >&2 || true
    exit 1
  fi
  echo "$wrapper"
}

if [ -x /usr/bin/swupdate ] && /usr/bin/swupdate --version >/dev/null 2>&1; then
  write_wrapper 'exec /usr/bin/swupdate "$@"'
  exit 0
fi

for tool in apt-get apt-cache dpkg-deb dpkg-query ldd; do
  if ! command -v "$tool" >/dev/null; then
    echo "ensure-swupdate: $tool is missing: this script needs a Debian/Ubuntu system (or install swupdate 2022.12 as /usr/bin/swupdate)" >&2
    exit 1
  fi
done

tmp=$(mktemp -d "$out/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/debs" "$tmp/root"
aptopts=(-q)
if [ "$(id -u)" -eq 0 ]; then
  # apt's _apt user cannot write into a private directory; as root the
  # download runs unsandboxed either way, this only silences the warning.
  aptopts+=(-o APT::Sandbox::User=root)
fi

refreshed=
download() { # $1: package; downloads into $tmp/debs
  if (cd "$tmp/debs" && apt-get download "${aptopts[@]}" "$1" >/dev/null 2>"$tmp/apt.err"); then
    return 0
  fi
  # Missing package lists are the usual cause: refresh them once.
  if [ -z "$refreshed" ]; then
    refreshed=1
    sudo=
    if [ "$(id -u)" -ne 0 ]; then
      if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
        sudo="sudo -n"
      else
        echo "ensure-swupdate: apt-get download $1 failed and apt-get update needs root (no password-less sudo):" >&2
        cat "$tmp/apt.err" >&2
        return 1
      fi
    fi
    echo "ensure-swupdate: refreshing the package lists (${sudo:-as root} apt-get update)" >&2
    $sudo apt-get update -qq >&2
    (cd "$tmp/debs" && apt-get download "${aptopts[@]}" "$1" >/dev/null 2>"$tmp/apt.err") && return 0
  fi
  echo "ensure-swupdate: apt-get download $1 failed:" >&2
  cat "$tmp/apt.err" >&2
  return 1
}

installed() { # $1: package
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# Library dependencies, breadth first, that are not installed here: the
# Depends fields of the downloaded packages (first alternative unless one is
# installed). Non-library packages (sysuser-helper, ...) are not needed to
# run the binary; the ldd check below is the judge.
echo "ensure-swupdate: downloading $pkg and its missing libraries into $out" >&2
download "$pkg"
queue=("$pkg")
declare -A seen=(["$pkg"]=1)
while [ ${#queue[@]} -gt 0 ]; do
  cur=${queue[0]}
  queue=("${queue[@]:1}")
  deb=$(ls "$tmp/debs/${cur}"_*.deb)
  deps=$(dpkg-deb -f "$deb" Depends Pre-Depends | sed -e 's/^[A-Za-z-]*: //' | tr ',' '\n')
  while IFS= read -r dep; do
    [ -n "${dep// /}" ] || continue
    choice=
    IFS='|' read -ra alts <<<"$dep"
    for alt in "${alts[@]}"; do
      name=$(sed -e 's/([^)]*)//g' -e 's/:[a-z0-9]*//' -e 's/[[:space:]]//g' <<<"$alt")
      if installed "$name"; then
        choice=
        break
      fi
      [ -n "$choice" ] || choice=$name
    done
    [ -n "$choice" ] || continue
    case $choice in lib*) ;; *) continue ;; esac
    [ -z "${seen[$choice]:-}" ] || continue
    seen[$choice]=1
    if download "$choice"; then
      queue+=("$choice")
    else
      echo "ensure-swupdate: skipping $choice (the ldd check decides whether it matters)" >&2
    fi
  done <<<"$deps"
done

for deb in "$tmp"/debs/*.deb; do
  dpkg-deb -x "$deb" "$tmp/root"
done
bin=usr/bin/swupdate
if [ ! -x "$tmp/root/$bin" ]; then
  echo "ensure-swupdate: $pkg has no $bin" >&2
  exit 1
fi
# Every directory holding a shared object, relative to the tree's root.
libdirs=$(cd "$tmp/root" && find . \( -name '*.so' -o -name '*.so.*' \) \( -type f -o -type l \) -printf '%h\n' | sed 's|^\./||' | sort -u)
ldpath=
for d in $libdirs; do
  ldpath=${ldpath:+$ldpath:}$tmp/root/$d
done
missing=$(LD_LIBRARY_PATH=$ldpath ldd "$tmp/root/$bin" | grep 'not found' || true)
if [ -n "$missing" ]; then
  echo "ensure-swupdate: libraries still missing for $bin:" >&2
  echo "$missing" >&2
  exit 1
fi

rm -rf "$out/root"
mv "$tmp/root" "$out/root"
dpkg-deb -f "$(ls "$tmp/debs/${pkg}"_*.deb)" Version >"$out/version"
(cd "$tmp/debs" && ls) >"$out/packages"
wrapped=
for d in $libdirs; do
  wrapped=${wrapped:+$wrapped:}\$here/root/$d
done
write_wrapper "here=\$(cd \"\$(dirname \"\$0\")\" && pwd)
LD_LIBRARY_PATH=$wrapped\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} exec \"\$here/root/$bin\" \"\$@\""
