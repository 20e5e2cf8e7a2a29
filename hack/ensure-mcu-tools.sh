#!/usr/bin/env bash
# Installs the Debian packages the mcu/ C library's tests need: the
# Cortex-M4 cross toolchain with newlib (rdimon semihosting specs), QEMU for
# the mps2-an386 board, mbedTLS for host builds, clang 14 with libFuzzer and
# the sanitizers, and dpkg-dev (apt-get source of mbedTLS for the cross
# build). Does nothing when all are installed. Debian/Ubuntu (apt-get);
# needs root or password-less sudo.
set -euo pipefail

packages=(
  gcc-arm-none-eabi
  libnewlib-arm-none-eabi
  qemu-system-arm
  libmbedtls-dev
  clang-14
  libclang-rt-14-dev
  llvm-14
  dpkg-dev
)

installed() { # $1: package
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  echo "ensure-mcu-tools: this script needs a Debian/Ubuntu system (dpkg-query, apt-get); install instead: ${packages[*]}" >&2
  exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
  installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

sudo=
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
  else
    echo "ensure-mcu-tools: missing packages ${missing[*]}; installing them needs root or password-less sudo" >&2
    exit 1
  fi
fi

# The package lists may be missing or stale (containers often ship without
# them): refresh once when apt does not know a candidate for every package.
refresh=
for pkg in "${missing[@]}"; do
  cand=$(apt-cache policy "$pkg" 2>/dev/null | sed -n 's/^ *Candidate: *//p')
  if [ -z "$cand" ] || [ "$cand" = "(none)" ]; then
    refresh=1
    break
  fi
done
if [ -n "$refresh" ]; then
  echo "ensure-mcu-tools: refreshing the package lists (${sudo:-as root} apt-get update)" >&2
  $sudo apt-get update -qq
fi

echo "ensure-mcu-tools: installing ${missing[*]}" >&2
# env, not export: sudo drops the caller's environment.
if ! $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
  if [ -n "$refresh" ]; then
    echo "ensure-mcu-tools: apt-get install ${missing[*]} failed" >&2
    exit 1
  fi
  # A candidate from stale lists may be gone from the mirror: refresh and retry once.
  echo "ensure-mcu-tools: install failed; refreshing the package lists and retrying" >&2
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for pkg in "${missing[@]}"; do
  if ! installed "$pkg"; then
    echo "ensure-mcu-tools: $pkg is still not installed after apt-get install" >&2
    exit 1
  fi
done
