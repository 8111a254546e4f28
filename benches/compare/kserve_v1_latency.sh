#!/usr/bin/env bash
# V1 predict latency, one row, as an operator would read it: canopy's KServe router
# (examples/kserve_csv_server.rs, the forest of kserve_v1_wrk.sh) under Debian's wrk
#   - closed loop (each connection sends its next request when the last is answered) at 1, 8 and
#     32 connections: throughput at saturation, where p99 is mostly time queued for a core;
#   - fixed rates below saturation: each connection waits 1 ms between requests (wrk's Lua
#     `delay()`, whole milliseconds), so N connections offer about N x 1,000 req/s and p99 is
#     service time plus scheduling, not queueing;
# both unpinned (server and wrk share the 2 cores) and pinned (server on core 0 with one tokio
# worker, wrk with one thread on core 1).
#
# Usage: benches/compare/kserve_v1_latency.sh [DURATION]   (default 10s; CANOPY_PYTHON, else .venv)
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=${1:-10s}
python=${CANOPY_PYTHON:-$PWD/.venv/bin/python}
[ -x "$python" ] || { echo "no Python at $python: set CANOPY_PYTHON" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-$PWD/target}
cargo build --release --quiet --example kserve_csv_server
work=$(mktemp -d)
cp "$target/release/examples/kserve_csv_server" "$work/"
pid=
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
"$python" benches/compare/kserve_v1_model.py "$work" >/dev/null

body='{"instances": [[0.5, 0.6, 0.01, 100, 80]]}'
printf 'wrk.method = "POST"\nwrk.body = %s\nwrk.headers["Content-Type"] = "application/json"\n' "'$body'" > "$work/closed.lua"
cp "$work/closed.lua" "$work/rate.lua"
printf 'function delay()\n  return 1\nend\n' >> "$work/rate.lua"

pin() { local cpus=$1; shift; if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi; }
summary() { # wrk output file -> "req/s p50 p99" (ms)
  awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 } $1 == "50%" { p50 = ms($2) } $1 == "99%" { p99 = ms($2) }
    END { printf "%.0f %.3f %.3f\n", rps, p50, p99 }' "$1"
}

printf '| placement | load | wrk | req/s | p50 ms | p99 ms |\n|---|---|---|---|---|---|\n'
for placement in unpinned pinned; do
  if [ "$placement" = pinned ]; then server_cpus=0 wrk_cpus=1 threads=1 workers=1; else server_cpus= wrk_cpus= threads=2 workers=; fi
  port=$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  if [ -n "$workers" ]; then export TOKIO_WORKER_THREADS=$workers; else unset TOKIO_WORKER_THREADS; fi
  pin "$server_cpus" "$work/kserve_csv_server" "$work/train.csv" "127.0.0.1:$port" > "$work/server.log" 2>&1 &
  pid=$!
  url="http://127.0.0.1:$port/v1/models/anomaly-detector:predict"
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/v1/models/anomaly-detector" >/dev/null && break; sleep 0.2; done
  pin "$wrk_cpus" wrk -t"$threads" -c8 -d2s -s "$work/closed.lua" "$url" >/dev/null
  for run in closed:1 closed:8 closed:32 rate:2 rate:8 rate:20; do
    mode=${run%:*} conns=${run#*:}
    t=$(( conns < threads ? conns : threads ))
    pin "$wrk_cpus" wrk -t"$t" -c"$conns" -d"$duration" --latency -s "$work/$mode.lua" "$url" > "$work/out"
    read -r rps p50 p99 < <(summary "$work/out")
    if [ "$mode" = closed ]; then load="closed loop, $conns conn"; else load="~$conns,000 req/s offered ($conns conn, 1 ms apart)"; fi
    printf '| %s | %s | -t%s -c%s | %s | %s | %s |\n' "$placement" "$load" "$t" "$conns" "$rps" "$p50" "$p99"
  done
  kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
done
echo "(machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg))"
