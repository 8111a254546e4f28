#!/bin/sh
# A forecaster checkpoint written by canopy as of checkpoint format 1 itself, read by this canopy
# with the same prediction bits. Extracts that commit's tree (git archive, into a temporary
# folder), builds write_checkpoint.rs there as an example, runs it, then runs the ignored test of
# tests/checkpoint.rs that decodes its file here and compares every prediction's bits.
#
# Usage, from the crate root: tests/format1/check.sh [COMMIT]
# COMMIT defaults to 0c4b055, the last commit whose canopy wrote forecasters in format 1.
# Set CARGO_TARGET_DIR to share built dependencies between the two trees.
set -eu
commit=${1:-0c4b055}
root=$(pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/tree"
git archive "$commit" | tar -x -C "$tmp/tree"
cp tests/format1/write_checkpoint.rs "$tmp/tree/examples/"
(cd "$tmp/tree" && cargo run --quiet --release --example write_checkpoint -- "$tmp/out")
cd "$root"
CANOPY_FORMAT1_DIR="$tmp/out" cargo test --test checkpoint -- --ignored --exact \
    a_file_written_by_format_1_canopy_loads_with_its_predictions
