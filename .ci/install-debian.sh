#!/usr/bin/env bash
# Peers of the Debian-package builder (issue 23): gpgv checks InRelease signatures in the builder itself; the tests
# make a local archive with dpkg-scanpackages (dpkg-dev), sign it with a throwaway key (gnupg) and fetch its .debs
# with apt-get download (apt, with a private state dir). xz-utils decompresses data.tar.xz and Packages.xz.
# mmdebstrap is the peer of the Debian base bench (bench/debian.ts).
set -euo pipefail
pkgs=(gpgv gnupg dpkg-dev xz-utils debian-archive-keyring apt mmdebstrap)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "apt: installing ${missing[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
