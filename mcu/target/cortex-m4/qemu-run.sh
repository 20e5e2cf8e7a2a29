#!/usr/bin/env bash
# Runs a test ELF on QEMU's mps2-an386 (Cortex-M4) with semihosting: the
# program's stdio is this terminal, its files are the host's (relative to
# the current directory), ARGS are its argv[1..].
#
#   mcu/target/cortex-m4/qemu-run.sh ELF [ARGS...]
#
# QEMU_TIMEOUT (seconds, default 600) bounds the run. The exit status is the
# program's: semihosting passes exit codes through; in addition a run whose
# last "RESULT:" line is not "RESULT: PASS" fails. 124 on timeout.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 ELF [ARGS...]" >&2
  exit 2
fi
elf=$1
shift
qemu=${QEMU_SYSTEM_ARM:-qemu-system-arm}
if ! command -v "$qemu" >/dev/null; then
  echo "qemu-run: $qemu is missing (run hack/ensure-mcu-tools.sh)" >&2
  exit 1
fi
if [ ! -f "$elf" ]; then
  echo "qemu-run: no such ELF: $elf" >&2
  exit 1
fi

# QEMU's option syntax: a comma inside a value is written twice.
semi="enable=on,target=native,arg=${elf//,/,,}"
for a in "$@"; do
  semi+=",arg=${a//,/,,}"
done

log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
timeout --foreground -k 5 "${QEMU_TIMEOUT:-600}" \
  "$qemu" -M mps2-an386 -cpu cortex-m4 -display none -monitor none -serial null \
  -semihosting-config "$semi" -kernel "$elf" </dev/null | tee "$log"
status=${PIPESTATUS[0]}
set -e

if [ "$status" -eq 124 ]; then
  echo "qemu-run: $elf timed out after ${QEMU_TIMEOUT:-600}s" >&2
  exit 124
fi
last=$(grep -a '^RESULT: ' "$log" | tail -n 1 || true)
if [ "$status" -eq 0 ] && [ -n "$last" ] && [ "$last" != "RESULT: PASS" ]; then
  echo "qemu-run: $elf exited 0 but printed '$last'" >&2
  status=1
fi
exit "$status"
