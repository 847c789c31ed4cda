#!/usr/bin/env bash
# The whole job end to end on this machine: installs what is missing, builds airgap, starts a
# source and a target registry on loopback, seeds sample images, packs, verifies, inspects,
# loads and checks what landed with skopeo, then serves the bundle and reads every image back
# from `airgap serve`. Leaves nothing running.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
bash scripts/install-deps.sh
cargo build --release --bin airgap --example demo
AIRGAP_BIN="$PWD/target/release/airgap" ./target/release/examples/demo
