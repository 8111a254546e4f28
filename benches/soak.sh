#!/usr/bin/env bash
# The soak, long: Prometheus-shaped remote-write at 80% of the measured maximum, predict calls on
# both models, retraining and checkpoints, all at once against a release build of canopy on
# loopback, for 10 minutes (SOAK_SECONDS to change it). Prints throughput, p99s, RSS, retrains and
# checkpoints every tenth of the run; fails if any request fails or RSS grows more than 10% after
# the first fifth. CI runs the same test for 60 s on the debug build.
#
# Usage: [SOAK_SECONDS=600] benches/soak.sh
set -euo pipefail
crate="$(cd "$(dirname "$0")/.." && pwd)"
export SOAK_SECONDS="${SOAK_SECONDS:-600}"
cd "$crate"
exec cargo test --release --test soak -- --nocapture
