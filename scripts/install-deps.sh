#!/usr/bin/env bash
# Installs, from Debian's packages, the tools the demo and the tests drive, only those
# missing: the CNCF distribution registry, skopeo, htpasswd, zstd, openssl, containerd (with
# ctr, for the mirror-configuration tests), GNU time.
set -euo pipefail

declare -A packages=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [htpasswd]=apache2-utils
  [zstd]=zstd
  [openssl]=openssl
  [containerd]=containerd
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
