#!/usr/bin/env bash
# Writes a kustomize overlay into bin/deploy that deploys OVERLAY (default
# config/default) with the image IMG, and prints its directory. kubectl's
# built-in kustomize has no `edit set image`, so the image is set here.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
img=${IMG:?set IMG, e.g. IMG=registry.example.com/otaflow:v0.1.0}
overlay=${OVERLAY:-config/default}
name=${img%:*}
tag=${img##*:}
if [ "$name" = "$img" ]; then tag=latest; fi
out=$root/bin/deploy
mkdir -p "$out"
cat > "$out/kustomization.yaml" <<YAML
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
- ../../$overlay
images:
- name: ghcr.io/otaflow/otaflow
  newName: $name
  newTag: "$tag"
YAML
echo "$out"
