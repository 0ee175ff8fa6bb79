#!/usr/bin/env bash
# Installs a real S3-compatible server for berth's S3 tests: SeaweedFS (`weed`), built from the Go module proxy.
# Idempotent: skipped when $TOOLS/bin/weed already exists. Called by .ci/install-peers.sh; also runnable alone.
# Tests start it with `weed mini`-style single-process flags (see test/support/s3-server.ts).
set -euo pipefail
TOOLS="${BERTH_TOOLS:-/opt/berth-tools}"
mkdir -p "$TOOLS/bin"
# The one version the Go module proxy serves here (a pseudo-version; seaweedfs tags are not module versions).
WEED_VERSION=v0.0.0-20261109003541-7506e5f91cd6
if [ -x "$TOOLS/bin/weed" ]; then
  exit 0
fi
echo "go: building seaweedfs weed@$WEED_VERSION (a few minutes on 2 cores)"
start=$(date +%s)
# The module's go.mod has replace directives, so `go install mod@version` refuses it: build inside a copy of the
# module source instead (as install-peers.sh does for the conformance suite). -s -w shortens the link step.
dir=$(GOFLAGS=-mod=mod go mod download -json "github.com/seaweedfs/seaweedfs@$WEED_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$dir"/. "$work"; chmod -R u+w "$work"
(cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags='-s -w' -o "$TOOLS/bin/weed.tmp" ./weed)
mv "$TOOLS/bin/weed.tmp" "$TOOLS/bin/weed"
echo "weed installed in $TOOLS/bin in $(( $(date +%s) - start ))s"
