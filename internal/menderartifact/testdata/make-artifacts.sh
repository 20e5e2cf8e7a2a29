#!/usr/bin/env bash
# Writes the Mender artifact fixtures of this directory; see README.md.
# Usage: MENDER_ARTIFACT=path/to/mender-artifact bash make-artifacts.sh OUTDIR
set -euo pipefail
M=${MENDER_ARTIFACT:-mender-artifact}
out=$(cd "${1:-.}" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
for i in $(seq 1 12); do printf 'otaflow payload line %02d\n' "$i"; done > payload.bin   # 300 bytes
for i in $(seq 1 16); do printf 'otaflow rootfs image block %04d\n' "$i"; done > rootfs.ext4 # 512 bytes
echo '{"vendor":"otaflow","build":7}' > meta-data.json
printf '#!/bin/sh\nexit 0\n' > ArtifactInstall_Enter_00_check
openssl ecparam -genkey -name prime256v1 -noout -out key.pem 2>/dev/null
$M write module-image -T otaflow-test -n release-2.1.0 -t sensor-v1 -t sensor-v2 -f payload.bin -o "$out/module-gzip.mender"
$M write module-image -T otaflow-test -n release-2.1.0-none -t sensor-v1 -f payload.bin --compression none -o "$out/module-none.mender"
$M write module-image -T otaflow-test -n release-2.1.0-lzma -t sensor-v1 -f payload.bin --compression lzma -o "$out/module-lzma.mender"
$M write rootfs-image -n rootfs-1.0 -t raspberrypi4 -f rootfs.ext4 -o "$out/rootfs.mender"
$M write rootfs-image -n rootfs-v2 -t raspberrypi4 -t raspberrypi3 -f rootfs.ext4 -v 2 -o "$out/rootfs-v2.mender"
$M write bootstrap-artifact -n bootstrap-1 -t sensor-v1 -o "$out/bootstrap.mender"
$M write module-image -T otaflow-test -n signed-3.0 -t Sensor-V1 -t sensor-v2 -f payload.bin -k key.pem \
  -p build.id:42 -p app.version:3.0.0 -d kernel.version:5.10 -g beta -G alpha -G beta -N release-2.1.0 \
  -m meta-data.json -s ArtifactInstall_Enter_00_check -o "$out/signed.mender"
$M write module-image -T otaflow-test -n augmented-1 -t sensor-v1 -f payload.bin -k key.pem \
  --augment-type otaflow-delta --augment-provides delta.base:2.1.0 --augment-file rootfs.ext4 -o "$out/augmented.mender"
