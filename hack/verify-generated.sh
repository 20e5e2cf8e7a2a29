#!/usr/bin/env bash
# Fails when the committed generated files (CRDs, RBAC, deepcopy, OpenAPI, the
# C library's Ed25519 tables and cases) differ from what the generators
# produce now. Works on a copy, so the tree is untouched.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$root"
tar --exclude=./bin --exclude=./.git --exclude=./mcu/build -cf - . | (cd "$tmp" && tar -xf -)
make -C "$tmp" --no-print-directory -s manifests generate >/dev/null
status=0
for p in config/crd/bases config/rbac/role.yaml config/rbac/otaserver/role.yaml api/v1alpha1/zz_generated.deepcopy.go api/devices/v1alpha1/zz_generated.deepcopy.go otaserver/deviceapi/openapi/zz_generated.openapi.go hack/api-rule-violations.list mcu/src/ed25519_tables.h mcu/test/ed25519_cases.txt; do
  if ! diff -ru "$root/$p" "$tmp/$p"; then status=1; fi
done
if [ $status -ne 0 ]; then
  echo "generated files are stale: run 'make manifests generate' and commit the result" >&2
  exit 1
fi
echo "generated files are up to date"
