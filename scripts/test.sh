#!/usr/bin/env bash
# Installs the tools the integration tests drive (only those missing), then checks
# formatting and lints and runs every test. Used by .ci/run and by developers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# command -> Debian package
declare -A packages=(
  [docker-registry]=docker-registry
  [skopeo]=skopeo
  [htpasswd]=apache2-utils
  [zstd]=zstd
  [openssl]=openssl
)
missing=()
for cmd in "${!packages[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${packages[$cmd]}")
done
# GNU time, for the peak-memory test (the shell keyword is not enough).
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

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# Every test starts its own registries on free ports in its own temporary directories,
# so the default parallelism is safe.
cargo test --all-targets
