# Shared by the hack/ensure-*.sh scripts that make a Debian package's
# binaries runnable without installing anything: the .deb and the shared
# libraries missing on this machine are fetched with `apt-get download` (no
# root needed) and unpacked with `dpkg-deb -x` (no maintainer scripts run);
# wrappers then set LD_LIBRARY_PATH. Sourced, under `set -euo pipefail`.
#
#   deb_init TAG OUT       messages start with "TAG: "; work in a temporary
#                          directory under OUT, removed on exit
#   deb_require_tools HINT fail (naming HINT) without apt-get, dpkg-deb, ldd
#   deb_fetch PKG...       download PKG and its missing library dependencies
#   deb_unpack             unpack every download into $deb_tmp/root
#   deb_check_libs BIN...  fail unless ldd finds every library of BIN (paths
#                          relative to the tree's root)
#   deb_install_tree OUT   move the tree to OUT/root, list the packages in
#                          OUT/packages
#   deb_version PKG        the downloaded PKG's version
#   deb_ld_path PREFIX     the library directories under PREFIX, ':'-joined
#   deb_exec_body BIN      a wrapper body that runs BIN of the tree next to
#                          the wrapper with those libraries
#   deb_write_wrapper WRAPPER BODY
#                          write the shell script WRAPPER through a rename
#                          and fail unless `WRAPPER --version` runs
#   deb_installed PKG      whether PKG is installed (needs no deb_init)
#   deb_root_cmd           print the prefix that runs a command as root:
#                          nothing as root, "sudo -n" with password-less
#                          sudo; fail otherwise (needs no deb_init)

deb_init() { # $1: tag, $2: output directory
  deb_tag=$1
  deb_tmp=$(mktemp -d "$2/.build.XXXXXX")
  trap 'rm -rf "$deb_tmp"' EXIT
  mkdir "$deb_tmp/debs" "$deb_tmp/root"
  deb_aptopts=(-q)
  if [ "$(id -u)" -eq 0 ]; then
    # apt's _apt user cannot write into a private directory; as root the
    # download runs unsandboxed either way, this only silences the warning.
    deb_aptopts+=(-o APT::Sandbox::User=root)
  fi
  deb_refreshed=
  deb_libdirs=
}

deb_require_tools() { # $1: what to do instead
  local tool
  for tool in apt-get apt-cache dpkg-deb dpkg-query ldd; do
    if ! command -v "$tool" >/dev/null; then
      echo "$deb_tag: $tool is missing: this script needs a Debian/Ubuntu system ($1)" >&2
      exit 1
    fi
  done
}

deb_download() { # $1: package; downloads into $deb_tmp/debs
  if (cd "$deb_tmp/debs" && apt-get download "${deb_aptopts[@]}" "$1" >/dev/null 2>"$deb_tmp/apt.err"); then
    return 0
  fi
  # Missing package lists are the usual cause: refresh them once.
  if [ -z "$deb_refreshed" ]; then
    deb_refreshed=1
    local sudo
    if ! sudo=$(deb_root_cmd); then
      echo "$deb_tag: apt-get download $1 failed and apt-get update needs root (no password-less sudo):" >&2
      cat "$deb_tmp/apt.err" >&2
      return 1
    fi
    echo "$deb_tag: refreshing the package lists (${sudo:-as root} apt-get update)" >&2
    $sudo apt-get update -qq >&2
    (cd "$deb_tmp/debs" && apt-get download "${deb_aptopts[@]}" "$1" >/dev/null 2>"$deb_tmp/apt.err") && return 0
  fi
  echo "$deb_tag: apt-get download $1 failed:" >&2
  cat "$deb_tmp/apt.err" >&2
  return 1
}

deb_installed() { # $1: package
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

deb_root_cmd() {
  if [ "$(id -u)" -eq 0 ]; then
    return 0
  fi
  command -v sudo >/dev/null && sudo -n true 2>/dev/null && echo "sudo -n"
}

deb_file() { # $1: package; the downloaded .deb
  ls "$deb_tmp/debs/${1}"_*.deb
}

# Library dependencies, breadth first, that are not installed here: the
# Depends fields of the downloaded packages (first alternative unless one is
# installed). Non-library packages (sysuser-helper, parted, ...) are not
# needed to run the binaries; deb_check_libs is the judge.
deb_fetch() { # $@: packages
  local pkg cur deps dep choice alt name
  local -a queue=() alts
  local -A seen=()
  for pkg in "$@"; do
    deb_download "$pkg"
    queue+=("$pkg")
    seen[$pkg]=1
  done
  while [ ${#queue[@]} -gt 0 ]; do
    cur=${queue[0]}
    queue=("${queue[@]:1}")
    deps=$(dpkg-deb -f "$(deb_file "$cur")" Depends Pre-Depends | sed -e 's/^[A-Za-z-]*: //' | tr ',' '\n')
    while IFS= read -r dep; do
      [ -n "${dep// /}" ] || continue
      choice=
      IFS='|' read -ra alts <<<"$dep"
      for alt in "${alts[@]}"; do
        name=$(sed -e 's/([^)]*)//g' -e 's/:[a-z0-9]*//' -e 's/[[:space:]]//g' <<<"$alt")
        if deb_installed "$name"; then
          choice=
          break
        fi
        [ -n "$choice" ] || choice=$name
      done
      [ -n "$choice" ] || continue
      case $choice in lib*) ;; *) continue ;; esac
      [ -z "${seen[$choice]:-}" ] || continue
      seen[$choice]=1
      if deb_download "$choice"; then
        queue+=("$choice")
      else
        echo "$deb_tag: skipping $choice (the ldd check decides whether it matters)" >&2
      fi
    done <<<"$deps"
  done
}

deb_unpack() {
  local deb
  for deb in "$deb_tmp"/debs/*.deb; do
    dpkg-deb -x "$deb" "$deb_tmp/root"
  done
  # Every directory holding a shared object, relative to the tree's root.
  deb_libdirs=$(cd "$deb_tmp/root" && find . \( -name '*.so' -o -name '*.so.*' \) \( -type f -o -type l \) -printf '%h\n' | sed 's|^\./||' | sort -u)
}

deb_ld_path() { # $1: prefix of the library directories
  local d p=
  for d in $deb_libdirs; do
    p=${p:+$p:}$1/$d
  done
  printf '%s' "$p"
}

deb_exec_body() { # $1: binary, relative to the tree's root
  local ld
  ld=$(deb_ld_path '$here/root')
  printf '%s\n' 'here=$(cd "$(dirname "$0")" && pwd)'
  if [ -n "$ld" ]; then
    printf '%s\n' "LD_LIBRARY_PATH=$ld\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH} exec \"\$here/root/$1\" \"\$@\""
  else
    printf '%s\n' "exec \"\$here/root/$1\" \"\$@\""
  fi
}

deb_check_libs() { # $@: binaries, relative to the tree's root
  local bin missing
  for bin in "$@"; do
    if [ ! -x "$deb_tmp/root/$bin" ]; then
      echo "$deb_tag: the packages have no $bin" >&2
      exit 1
    fi
    missing=$(LD_LIBRARY_PATH=$(deb_ld_path "$deb_tmp/root") ldd "$deb_tmp/root/$bin" | grep 'not found' || true)
    if [ -n "$missing" ]; then
      echo "$deb_tag: libraries still missing for $bin:" >&2
      echo "$missing" >&2
      exit 1
    fi
  done
}

deb_install_tree() { # $1: output directory
  rm -rf "$1/root"
  mv "$deb_tmp/root" "$1/root"
  (cd "$deb_tmp/debs" && ls) >"$1/packages"
}

deb_version() { # $1: package
  dpkg-deb -f "$(deb_file "$1")" Version
}

# Wrappers are written last, through a rename, so an interrupted run never
# leaves one that looks done.
deb_write_wrapper() { # $1: wrapper path, $2: wrapper body
  printf '%s\n' "#!/bin/sh" "# Written by hack/$deb_tag.sh." "$2" >"$1.tmp"
  chmod 0755 "$1.tmp"
  mv "$1.tmp" "$1"
  if ! "$1" --version >/dev/null 2>&1; then
    echo "$deb_tag: $1 does not run:" >&2
    "$1" --version >&2 || true
    exit 1
  fi
}
