#!/usr/bin/env bash
# Installs the Debian packages the mcu/ C library's tests need: the
# Cortex-M4 cross toolchain with newlib (rdimon semihosting specs), QEMU for
# the mps2-an386 board, mbedTLS for host builds, clang 14 with libFuzzer and
# the sanitizers, and dpkg-dev (apt-get source of mbedTLS for the cross
# build). Does nothing when all are installed. Debian/Ubuntu (apt-get);
# needs root or password-less sudo.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/hack/lib/deb-tool.sh"

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

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  echo "ensure-mcu-tools: this script needs a Debian/Ubuntu system (dpkg-query, apt-get); install instead: ${packages[*]}" >&2
  exit 1
fi

missing=()
for pkg in "${packages[@]}"; do
  deb_installed "$pkg" || missing+=("$pkg")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

if ! sudo=$(deb_root_cmd); then
  echo "ensure-mcu-tools: missing packages ${missing[*]}; installing them needs root or password-less sudo" >&2
  exit 1
fi

install() {
  # env, not export: sudo drops the caller's environment.
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

echo "ensure-mcu-tools: installing ${missing[*]}" >&2
# The package lists may be missing (containers often ship without them) or
# stale (a candidate gone from the mirror): refresh once and retry.
if ! install 2>/dev/null; then
  echo "ensure-mcu-tools: refreshing the package lists (${sudo:-as root} apt-get update) and retrying" >&2
  $sudo apt-get update -qq
  install
fi

for pkg in "${missing[@]}"; do
  if ! deb_installed "$pkg"; then
    echo "ensure-mcu-tools: $pkg is still not installed after apt-get install" >&2
    exit 1
  fi
done
