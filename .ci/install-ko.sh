#!/usr/bin/env bash
# ko, the Go image builder `preset: go` is measured against (npm run bench, bench/cicache.ts), built from the Go
# module proxy (no other download is possible here). Idempotent: skipped when $TOOLS/bin/ko is there.
set -euo pipefail
TOOLS="${BERTH_TOOLS:-/opt/berth-tools}"
KO_VERSION=v0.18.1
mkdir -p "$TOOLS/bin"
if [ ! -x "$TOOLS/bin/ko" ]; then
  echo "go: installing ko $KO_VERSION"
  GOBIN="$TOOLS/bin.ko.tmp" CGO_ENABLED=0 go install -trimpath -ldflags='-s -w' "github.com/google/ko@$KO_VERSION"
  mv "$TOOLS/bin.ko.tmp/ko" "$TOOLS/bin/ko"
  rmdir "$TOOLS/bin.ko.tmp"
fi
echo "ko ready: $("$TOOLS/bin/ko" version 2>/dev/null || echo '?')"
