#!/usr/bin/env bash
# Replays every NAB CSV through canopy (benches/nab-replay/canopy.toml) with the models' seed set
# to 0, 1 and 2 and every `step` set to the file's median sampling interval (as NAB's files are
# meant to be run with the config), and scores each seed's outputs with NAB 1.1's scorer
# (examples/nab_score.rs). Prints seed 0's per-file table (windows detected and false positives,
# from replay's own summary), then the normalised NAB score of each seed and profile, and their
# mean over the seeds.
#
# Usage: [COLUMN=anomaly_likelihood] [JOBS=2] [EVERY=1 [MIXED=1]] [SEEDS="0 1 2"] benches/compare/nab_replay.sh [NAB_DIR] [CONFIG]
#   NAB_DIR defaults to ../shared/data/nab next to the crate (or next to the folder of worktrees
#   holding it; the data is never copied into the repository); CONFIG to
#   benches/nab-replay/canopy.toml. COLUMN is the replay output column nab_score reads; JOBS the
#   replays run at once. EVERY=k keeps only every k-th row of each file (12 turns 5-minute files
#   into hourly ones): how the config does at a step it was not tuned at; with MIXED=1 only every
#   other file is resampled, so one threshold must serve two steps. SEEDS replaces the
#   seeds (more seeds, a steadier mean for comparing configs). Outputs go to
#   $OUT_DIR/seedN/ (a temp dir by default), the files replayed to $OUT_DIR/nab/.
set -euo pipefail

crate="$(cd "$(dirname "$0")/../.." && pwd)"
default_nab="$crate/../shared/data/nab"
[ -d "$default_nab" ] || default_nab="$crate/../../shared/data/nab"
source_nab="$(cd "${1:-$default_nab}" && pwd)"
config="${2:-$crate/benches/nab-replay/canopy.toml}"
column="${COLUMN:-anomaly_likelihood}"
jobs="${JOBS:-2}"
every="${EVERY:-1}"
mixed="${MIXED:-0}"
read -ra seeds <<<"${SEEDS:-0 1 2}"
[ -f "$source_nab/windows.json" ] || { echo "no $source_nab/windows.json: pass the NAB folder as the first argument" >&2; exit 1; }
[ -f "$config" ] || { echo "no config $config" >&2; exit 1; }
grep -q '^step = ' "$config" || { echo "no \`step =\` line in $config to set to each file's interval" >&2; exit 1; }

cargo build --release --quiet --manifest-path "$crate/Cargo.toml" --bin canopy --example nab_score
target="${CARGO_TARGET_DIR:-$crate/target}"
out_dir="${OUT_DIR:-$(mktemp -d)}"
# The binaries run from the output folder, so a build during the run cannot change them.
mkdir -p "$out_dir"
cp "$target/release/canopy" "$target/release/examples/nab_score" "$out_dir/"
bin="$out_dir/canopy"
scorer="$out_dir/nab_score"

# The files as replayed (every k-th row) and each one's median interval in seconds.
nab="$out_dir/nab"
labels="$nab/windows.json"
declare -A interval
while IFS=$'\t' read -r key seconds; do
    interval[$key]="$seconds"
done < <(python3 "$crate/benches/compare/nab_prepare.py" "$source_nab" "$nab" "$every" "$mixed")

# One replay: the output and its log (replay's summary is on stderr) go to OUT/seedN/.
replay_one() {
    local csv="$1" conf="$2" dir="$3" base
    base="$(basename "$csv")"
    if ! "$bin" replay --input "$csv" --config "$conf" --labels "$labels" \
        --out "$dir/$base" >"$dir/$base.log" 2>&1; then
        echo "replay of $csv failed (seed config $conf): see $dir/$base.log" >&2
        return 1
    fi
}
export -f replay_one
export bin labels

mapfile -t csvs < <(find "$nab" -name '*.csv' | sort)
declare -A score
for seed in "${seeds[@]}"; do
    dir="$out_dir/seed$seed"
    mkdir -p "$dir"
    conf="$out_dir/canopy-seed$seed.toml"
    sed -E "s/^seed *=.*/seed = $seed/" "$config" >"$conf"
    grep -q '^seed = ' "$conf" || echo "warning: no \`seed =\` line in $config; seeds will not differ" >&2
    # Each file's config: the seed's, with every step (evaluation's and each model's) the file's.
    for csv in "${csvs[@]}"; do
        sed -E "s/^step *=.*/step = \"${interval[${csv#"$nab"/}]}s\"/" "$conf" >"$dir/$(basename "$csv").toml"
    done
    echo "seed $seed: replaying ${#csvs[@]} files into $dir" >&2
    printf '%s\0' "${csvs[@]}" | xargs -0 -P "$jobs" -I{} bash -c 'replay_one "$1" "$2/$(basename "$1").toml" "$2"' _ {} "$dir"
    json="$("$scorer" --nab "$nab" --outputs "$dir" --column "$column" --json)"
    # {"standard":S,"reward_low_FP_rate":F,"reward_low_FN_rate":N}, null where not defined.
    for profile in standard reward_low_FP_rate reward_low_FN_rate; do
        score[$seed,$profile]="$(sed -E "s/.*\"$profile\":([^,}]*).*/\1/" <<<"$json")"
    done
done

echo "seed 0, replay's own summary:"
printf '%-58s %9s %7s %8s\n' file detected windows false_pos
total_det=0 total_win=0 total_fp=0
for csv in "${csvs[@]}"; do
    rel="${csv#"$nab"/}"
    summary="$(grep '^windows detected' "$out_dir/seed0/$(basename "$csv").log")"
    # "windows detected D/W, false positives F, ..."
    det="$(sed -E 's#^windows detected ([0-9]+)/([0-9]+), false positives ([0-9]+).*#\1#' <<<"$summary")"
    win="$(sed -E 's#^windows detected ([0-9]+)/([0-9]+), false positives ([0-9]+).*#\2#' <<<"$summary")"
    fp="$(sed -E 's#^windows detected ([0-9]+)/([0-9]+), false positives ([0-9]+).*#\3#' <<<"$summary")"
    printf '%-58s %9s %7s %8s\n' "$rel" "$det" "$win" "$fp"
    total_det=$((total_det + det)) total_win=$((total_win + win)) total_fp=$((total_fp + fp))
done
printf '%-58s %9s %7s %8s\n' TOTAL "$total_det" "$total_win" "$total_fp"

echo
echo "NAB 1.1 normalised scores of \`$column\` (one threshold per profile over the corpus):"
printf '%-6s %10s %10s %10s\n' seed standard low-FP low-FN
# A score to two decimals, n/a when not defined (null: no windows).
fmt() { if [[ "$1" =~ ^-?[0-9] ]]; then printf '%.2f' "$1"; else printf 'n/a'; fi; }
for seed in "${seeds[@]}"; do
    printf '%-6s %10s %10s %10s\n' "$seed" "$(fmt "${score[$seed,standard]}")" \
        "$(fmt "${score[$seed,reward_low_FP_rate]}")" "$(fmt "${score[$seed,reward_low_FN_rate]}")"
done
# The mean over the seeds, n/a when a seed has none (no windows).
mean() {
    local profile="$1" values=()
    for seed in "${seeds[@]}"; do values+=("${score[$seed,$profile]}"); done
    awk 'BEGIN { for (i = 1; i < ARGC; i++) { if (ARGV[i] !~ /^-?[0-9.eE+-]+$/) { print "n/a"; exit }
                 s += ARGV[i] } printf "%.2f\n", s / (ARGC - 1) }' "${values[@]}"
}
printf '%-6s %10s %10s %10s\n' mean "$(mean standard)" "$(mean reward_low_FP_rate)" "$(mean reward_low_FN_rate)"
echo "outputs in $out_dir" >&2
