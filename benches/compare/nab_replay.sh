#!/usr/bin/env bash
# Replays every NAB CSV through canopy (benches/nab-replay/canopy.toml) and prints, per file, the
# labelled windows detected and the false positives, then the totals.
#
# Usage: benches/compare/nab_replay.sh [NAB_DIR] [CONFIG]
#   NAB_DIR defaults to ../shared/data/nab next to the crate (or next to the folder of worktrees
#   holding it; the data is never copied into the repository); CONFIG to benches/nab-replay/canopy.toml. Per-file outputs go to $OUT_DIR (a temp dir).
set -euo pipefail

crate="$(cd "$(dirname "$0")/../.." && pwd)"
default_nab="$crate/../shared/data/nab"
[ -d "$default_nab" ] || default_nab="$crate/../../shared/data/nab"
nab="$(cd "${1:-$default_nab}" && pwd)"
config="${2:-$crate/benches/nab-replay/canopy.toml}"
labels="$nab/windows.json"
[ -f "$labels" ] || { echo "no $labels: pass the NAB folder as the first argument" >&2; exit 1; }

cargo build --release --quiet --manifest-path "$crate/Cargo.toml" --bin canopy
bin="${CARGO_TARGET_DIR:-$crate/target}/release/canopy"
out_dir="${OUT_DIR:-$(mktemp -d)}"

printf '%-58s %9s %7s %8s\n' file detected windows false_pos
total_det=0 total_win=0 total_fp=0
while IFS= read -r csv; do
    rel="${csv#"$nab"/}"
    summary="$("$bin" replay --input "$csv" --config "$config" --labels "$labels" \
        --out "$out_dir/$(basename "$csv")" 2>&1 | grep '^windows detected')"
    # "windows detected D/W, false positives F, ..."
    det="$(sed -E 's#^windows detected ([0-9]+)/([0-9]+), false positives ([0-9]+).*#\1#' <<<"$summary")"
    win="$(sed -E 's#^windows detected ([0-9]+)/([0-9]+), false positives ([0-9]+).*#\2#' <<<"$summary")"
    fp="$(sed -E 's#^windows detected ([0-9]+)/([0-9]+), false positives ([0-9]+).*#\3#' <<<"$summary")"
    printf '%-58s %9s %7s %8s\n' "$rel" "$det" "$win" "$fp"
    total_det=$((total_det + det)) total_win=$((total_win + win)) total_fp=$((total_fp + fp))
done < <(find "$nab" -name '*.csv' | sort)
printf '%-58s %9s %7s %8s\n' TOTAL "$total_det" "$total_win" "$total_fp"
echo "outputs in $out_dir" >&2
