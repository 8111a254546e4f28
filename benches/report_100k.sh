#!/usr/bin/env bash
# How long `canopy replay --report` takes on a 100,000-row file, and how large the page is: the
# same replay timed without and with --report (the difference is the report's own cost), on the
# release binary, with NAB's replay config (benches/nab-replay/canopy.toml: four features, an
# isolation forest of 100 trees retrained every 6 hours) and one labelled window.
#
# Usage: benches/report_100k.sh [ROWS]   (100000 by default; files go to a temp dir)
set -euo pipefail

crate="$(cd "$(dirname "$0")/.." && pwd)"
rows="${1:-100000}"
config="$crate/benches/nab-replay/canopy.toml"
cargo build --release --quiet --manifest-path "$crate/Cargo.toml" --bin canopy
bin="${CARGO_TARGET_DIR:-$crate/target}/release/canopy"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT

# A daily wave with noise, one row every 5 minutes from 2024-01-01, and a spike at the middle,
# inside the labelled window.
awk -v n="$rows" 'BEGIN {
    srand(7); print "timestamp,value"; t0 = 1704067200; mid = int(n / 2)
    for (k = 0; k < n; k++) {
        v = 50 + 20 * sin(2 * 3.14159265 * k / 288) + 3 * rand()
        if (k == mid) v = 150
        print t0 + 300 * k "," v
    }
}' >"$dir/big.csv"
nab_time() { date -u -d "@$1" '+%Y-%m-%d %H:%M:%S.000000'; }
mid=$((1704067200 + 300 * (rows / 2)))
printf '{"big.csv": [["%s", "%s"]]}\n' "$(nab_time $((mid - 3600)))" "$(nab_time $((mid + 3600)))" >"$dir/windows.json"

# Wall-clock seconds of a command (bash's own timer, so no /usr/bin/time is needed).
seconds() {
    local start end
    start=$(date +%s.%N)
    "$@" >/dev/null 2>"$dir/log"
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.2f", b - a }'
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
plain=$(seconds "$bin" replay --input "$dir/big.csv" --config "$config" --labels "$dir/windows.json" --out "$dir/plain.csv")
report=$(seconds "$bin" replay --input "$dir/big.csv" --config "$config" --labels "$dir/windows.json" --out "$dir/out.csv" --report "$dir/big.html")
cmp -s "$dir/plain.csv" "$dir/out.csv" || { echo "the CSV differs with --report" >&2; exit 1; }
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo "$rows rows: replay ${plain}s, replay with --report ${report}s (the report: $(awk -v a="$plain" -v b="$report" 'BEGIN { printf "%.2f", b - a }')s); page $(stat -c %s "$dir/big.html") bytes"
grep -h '^replayed\|^windows' "$dir/log"
