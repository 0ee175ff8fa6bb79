#!/usr/bin/env bash
# The Python wheels test/builder-python.test.ts installs with `preset: python`, fetched once from PyPI into
# $TOOLS/wheels so that the test itself reads them from disk (pip --no-index --find-links) and talks only to
# loopback: six (pure) and markupsafe (binary: CPython 3.11, x86_64 and aarch64). Verified by hash; idempotent.
set -euo pipefail
TOOLS="${BERTH_TOOLS:-/opt/berth-tools}"
DIR="$TOOLS/wheels"
mkdir -p "$DIR"
REQ=$(mktemp)
trap 'rm -f "$REQ"' EXIT
cat > "$REQ" <<'REQS'
markupsafe==2.1.5 \
    --hash=sha256:6ec585f69cec0aa07d945b20805be741395e28ac1627333b1c5b0105962ffced \
    --hash=sha256:b91c037585eba9095565a3556f611e3cbfaa42ca1e865f7b8015fe5c7336d5a5
six==1.16.0 \
    --hash=sha256:8abb2f1d86890a2dfb989f9a77cfcfd3e47c2a354b01111771326f8aa26e0254
REQS
for arch in x86_64 aarch64; do
  if ls "$DIR"/MarkupSafe-2.1.5-cp311-cp311-manylinux_2_17_"$arch"*.whl >/dev/null 2>&1 && ls "$DIR"/six-1.16.0-*.whl >/dev/null 2>&1; then
    continue
  fi
  python3 -m pip download --disable-pip-version-check --quiet --no-deps --require-hashes --only-binary=:all: \
    --platform "manylinux_2_17_$arch" --platform "manylinux2014_$arch" --python-version 3.11 --implementation cp \
    --abi cp311 -d "$DIR" -r "$REQ"
done
echo "wheels ready: $(ls "$DIR" | tr '\n' ' ')"
