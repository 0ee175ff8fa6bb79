#!/usr/bin/env bash
# Tools for the operations tests (test/ops-helm.test.ts): helm, kubeconform, and Kubernetes JSON Schemas for
# kubeconform. Idempotent: each step is skipped when its result is already there.
# The schemas can't be downloaded from their usual site (no internet here), so they are generated from the
# Kubernetes OpenAPI document shipped in the k8s.io/kubernetes Go module (api/openapi-spec/swagger.json) by
# .ci/k8s-schemas.mjs — standalone (refs inlined) and strict (unknown fields refused), named as kubeconform expects.
set -euo pipefail
TOOLS="${BERTH_TOOLS:-/opt/berth-tools}"
mkdir -p "$TOOLS/bin"
export GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod

HELM_VERSION=v3.22.0
KUBECONFORM_VERSION=v0.8.0
K8S_VERSION=v1.34.4

[ -x "$TOOLS/bin/helm" ] || { echo "go: installing helm $HELM_VERSION"; go install "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"; }
[ -x "$TOOLS/bin/kubeconform" ] || { echo "go: installing kubeconform $KUBECONFORM_VERSION"; go install "github.com/yannh/kubeconform/cmd/kubeconform@$KUBECONFORM_VERSION"; }

SCHEMAS="$TOOLS/k8s-schemas/$K8S_VERSION-standalone-strict"
if [ ! -f "$SCHEMAS/deployment-apps-v1.json" ]; then
  echo "go: fetching the Kubernetes $K8S_VERSION OpenAPI document (k8s.io/kubernetes module) for kubeconform schemas"
  dir=$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  node "$(dirname "$0")/k8s-schemas.mjs" "$dir/api/openapi-spec/swagger.json" "$SCHEMAS.tmp"
  rm -rf "$SCHEMAS" && mv "$SCHEMAS.tmp" "$SCHEMAS"
fi
ln -sfn "$SCHEMAS" "$TOOLS/k8s-schemas/current"
echo "ops tools ready: helm, kubeconform, schemas in $SCHEMAS"
