#!/usr/bin/env bash
# Runs the fuzz targets one after another (one process at a time, niced), each for SECONDS
# (default 300) or 10 million executions, whichever comes first, with the limits every target
# must hold: 512 MB resident, no single allocation over 256 MB, no input slower than 10 s. New
# inputs go to corpus/<target>/, a crashing input to artifacts/<target>/; each run's output,
# ending with libFuzzer's final stats, to target/<target>.log.
#
#   fuzz/run.sh [SECONDS [TARGET...]]
set -uo pipefail
cd "$(dirname "$0")"
seconds=${1:-300}
shift $(($# > 0 ? 1 : 0))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  targets=(remote_write kserve_v1 kserve_v2 checkpoint csv config promql)
fi
mkdir -p target
for t in "${targets[@]}"; do
  echo "== $t: ${seconds}s"
  nice -n 10 cargo +nightly fuzz run --debug-assertions "$t" "corpus/$t" -- \
    -max_total_time="$seconds" -runs=10000000 -rss_limit_mb=512 -malloc_limit_mb=256 -timeout=10 \
    -print_final_stats=1 >"target/$t.log" 2>&1
  echo "exit $?"
  grep -E '^(stat::number_of_executed_units|stat::average_exec_per_sec|stat::peak_rss_mb)|^==[0-9]+==|panicked|SUMMARY|Test unit written' "target/$t.log"
done
