#!/usr/bin/env bash
# Installs, from Debian's packages, the tools the demo and the tests drive, only those
# missing: the CNCF distribution registry, skopeo, htpasswd, zstd, openssl, containerd (with
# ctr, for the mirror-configuration tests), python3 (a chart repository's HTTP server in
# tests/charts.rs), GNU time. (scripts/bench-interop.sh installs nginx,
# which only the benchmark uses.)
set -euo pipefail

declare -A packages=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [htpasswd]=apache2-utils
  [zstd]=zstd
  [openssl]=openssl
  [containerd]=containerd
  [python3]=python3
)
missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
# GNU time, for peak-memory measurements (the shell keyword is not enough).
[ -x /usr/bin/time ] || missing+=(time)

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo=(sudo)
  fi
  "${sudo[@]}" apt-get update
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"
fi

# A second, independent OCI registry implementation for the interoperability tests:
# ferro-oci-server from crates.io, built once into a cache outside the checkout.
tools=${AIRGAP_TOOLS:-$HOME/.cache/airgap-tools}
if [ ! -x "$tools/bin/ferro-oci-server" ]; then
  echo "installing ferro-oci-server 1.0.0 into $tools (once; about a minute)"
  cargo install --locked --quiet ferro-oci-server --version 1.0.0 --root "$tools" \
    || cargo install --quiet ferro-oci-server --version 1.0.0 --root "$tools"
fi
