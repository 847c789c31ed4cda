#!/usr/bin/env bash
# Installs the tools the integration tests drive (only those missing), then checks
# formatting and lints and runs every test. Used by .ci/run and by developers.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash scripts/install-deps.sh

cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
# Every test starts its own registries on free ports in its own temporary directories,
# so the default parallelism is safe.
cargo test --all-targets
