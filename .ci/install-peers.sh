#!/usr/bin/env bash
# Installs every real peer berth's tests talk to (see ../shared/TESTING.md). Idempotent: each step is skipped
# when its tool is already there, so a warm machine spends seconds here.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
TOOLS="${BERTH_TOOLS:-/opt/berth-tools}"
mkdir -p "$TOOLS/bin"
export GOBIN="$TOOLS/bin" GOFLAGS=-mod=mod

# gpgv … apt: the Debian-package builder and its tests (.ci/install-debian.sh says why), installed here so no two
# apt-get run at once (the other installers run side by side below).
apt_pkgs=(docker.io containerd skopeo podman buildah umoci docker-registry wrk hyperfine busybox-static uidmap fuse-overlayfs zstd openssl curl tmux nginx-light tinyproxy chromium util-linux gpgv gnupg dpkg-dev xz-utils debian-archive-keyring apt mmdebstrap)
missing=()
for p in "${apt_pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "apt: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
# Debian starts docker-registry as a service on :5000 — it would collide with berth's default port.
if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then systemctl stop docker-registry || true; fi
pkill -f '^/usr/bin/docker-registry serve /etc/docker/registry/config.yml' 2>/dev/null || true
# nginx (the reverse proxy of test/nginx.test.ts) is started per test with its own config; not as a service on :80.
if command -v systemctl >/dev/null && systemctl is-active --quiet nginx 2>/dev/null; then systemctl stop nginx || true; systemctl disable nginx 2>/dev/null || true; fi
if [ -f /run/nginx.pid ] && [ "$(cat /proc/"$(cat /run/nginx.pid)"/comm 2>/dev/null)" = nginx ]; then kill "$(cat /run/nginx.pid)" || true; fi
# tinyproxy (the forward proxy of the transfer tests, started per test on a free port) is not wanted as a service.
if command -v systemctl >/dev/null && systemctl is-active --quiet tinyproxy 2>/dev/null; then systemctl stop tinyproxy || true; fi

go_tool() { # name module@version
  [ -x "$TOOLS/bin/$1" ] && return 0
  echo "go: installing $2"
  go install "$2"
}
go_tools() {
  go_tool crane github.com/google/go-containerregistry/cmd/crane@v0.22.1
  go_tool oras oras.land/oras/cmd/oras@v1.3.6
  go_tool regctl github.com/regclient/regclient/cmd/regctl@v0.11.7
  # HEAD load for the bench: Debian's wrk 4.1.0 hangs on HEAD responses that carry a Content-Length.
  go_tool hey github.com/rakyll/hey@v0.1.4
  # The conformance suite is a Go test binary: build it from the module source.
  local CONF_VERSION=v0.0.0-20260831232431-97274622c111
  if [ ! -x "$TOOLS/bin/conformance.test" ]; then
    echo "go: building conformance suite $CONF_VERSION"
    dir=$(go mod download -json "github.com/opencontainers/distribution-spec/conformance@$CONF_VERSION" | sed -n 's/.*"Dir": "\(.*\)".*/\1/p')
    work=$(mktemp -d); cp -r "$dir"/. "$work"; chmod -R u+w "$work"
    (cd "$work" && go mod download && go test -c -o "$TOOLS/bin/conformance.test" .)
    rm -rf "$work"
  fi
}

# The Go builds and the other parts' installers (S3 server, helm, signing tools, Node LTS binaries — each its own
# idempotent .ci/install-*.sh) run side by side: on a fresh machine downloads overlap with compiles (SeaweedFS and
# cosign are the long ones). Each job's output is kept and printed when it ends; any failure fails the install.
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
declare -A jobs=()
go_tools >"$logs/go-tools.log" 2>&1 &
jobs[go-tools]=$!
for extra in "$(dirname "$0")"/install-*.sh; do
  name=$(basename "$extra" .sh)
  [ "$name" = "install-peers" ] && continue
  bash "$extra" >"$logs/$name.log" 2>&1 &
  jobs[$name]=$!
done
failed=()
for name in "${!jobs[@]}"; do
  if wait "${jobs[$name]}"; then status=ok; else status=FAILED; failed+=("$name"); fi
  if [ -s "$logs/$name.log" ]; then sed "s/^/[$name] /" "$logs/$name.log"; fi
  echo "[$name] $status"
done
if [ ${#failed[@]} -gt 0 ]; then echo "install failed: ${failed[*]}" >&2; exit 1; fi
echo "peers ready in $TOOLS/bin"
