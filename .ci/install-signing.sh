#!/usr/bin/env bash
# Signing tools for the supply-chain tests (issue 20): cosign v2 and v3 and notation, built from the Go module proxy
# (no other download is possible here). Idempotent: each is skipped when its binary is already in $TOOLS/bin.
# cosign v2 and v3 build side by side (each ~8 min of CPU on 2 cores); run by install-peers.sh in parallel with the
# other slow builds.
set -euo pipefail
TOOLS="${BERTH_TOOLS:-/opt/berth-tools}"
mkdir -p "$TOOLS/bin"
export GOFLAGS=-mod=mod CGO_ENABLED=0

COSIGN2_VERSION=v2.6.5
COSIGN3_VERSION=v3.1.3
NOTATION_VERSION=v1.3.2

# Build a command from a module's source (for modules whose go.mod has replace directives, or that the proxy
# refuses to `go install` by version): copy the module dir, `go build` inside it.
build_from_source() { # output module@version package
  local out=$1 modver=$2 pkg=$3 dir work
  [ -x "$TOOLS/bin/$out" ] && return 0
  echo "go: building $out from $modver"
  dir=$(go mod download -json "$modver" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
  work=$(mktemp -d)
  cp -r "$dir"/. "$work"; chmod -R u+w "$work"
  (cd "$work" && go build -trimpath -ldflags='-s -w' -o "$TOOLS/bin/$out.tmp" "$pkg")
  rm -rf "$work"
  mv "$TOOLS/bin/$out.tmp" "$TOOLS/bin/$out"
}

build_from_source cosign "github.com/sigstore/cosign/v2@$COSIGN2_VERSION" ./cmd/cosign &
c2=$!
build_from_source cosign3 "github.com/sigstore/cosign/v3@$COSIGN3_VERSION" ./cmd/cosign &
c3=$!
build_from_source notation "github.com/notaryproject/notation@$NOTATION_VERSION" ./cmd/notation
wait $c2
wait $c3
echo "signing tools ready: $("$TOOLS/bin/cosign" version 2>/dev/null | sed -n 's/^GitVersion: *//p') / $("$TOOLS/bin/cosign3" version 2>/dev/null | sed -n 's/^GitVersion: *//p'), notation $("$TOOLS/bin/notation" version 2>/dev/null | sed -n 's/^Version: *//p')"
