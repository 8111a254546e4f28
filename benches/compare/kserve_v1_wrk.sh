#!/usr/bin/env bash
# V1 predict, one row, side by side: KServe's Python model server with scikit-learn
# (kserve_sklearn_server.py, the way KServe's sklearnserver serves a joblib model) and canopy's
# KServe router (examples/kserve_csv_server.rs, release build), both with an isolation forest of
# 100 trees x 256 samples, contamination 0.03, fitted on the same 2,000 rows
# (kserve_v1_model.py). The same one-row V1 request, the same load generator (Debian's wrk,
# 2 threads, 8 connections, --latency), one server after the other in this one run.
#
# Usage: benches/compare/kserve_v1_wrk.sh [DURATION]    (default 20s; CANOPY_PYTHON, else .venv)
# Optional pinning, applied to both servers alike: SERVER_CPUS=1 WRK_CPUS=0 (taskset lists), so
# that the load generator does not take the server's core.
# Prints each server's req/s, p50 and p99 and the ratios; budget for canopy: p99 <= 1 ms and
# >= 20,000 req/s on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/../.."

duration=${1:-20s}
python=${CANOPY_PYTHON:-$PWD/.venv/bin/python}
[ -x "$python" ] || { echo "no Python at $python: run .ci/run or set CANOPY_PYTHON" >&2; exit 1; }
command -v wrk >/dev/null || { echo "wrk is not installed: apt-get install wrk" >&2; exit 1; }
target=${CARGO_TARGET_DIR:-$PWD/target}

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { "$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_ready() { # URL LOG
  for _ in $(seq 1 300); do
    curl -sf "$1" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "server at $1 did not become ready; log:" >&2
  cat "$2" >&2
  exit 1
}

echo "== building canopy (release)" >&2
cargo build --release --quiet --example kserve_csv_server
echo "== training data and scikit-learn model" >&2
"$python" benches/compare/kserve_v1_model.py "$work"

body='{"instances": [[0.5, 0.6, 0.01, 100, 80]]}'
cat > "$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
LUA

# pin CPUS CMD...: runs CMD on the CPUs listed (taskset), or anywhere when CPUS is empty.
pin() { local cpus=$1; shift; if [ -n "$cpus" ]; then taskset -c "$cpus" "$@"; else "$@"; fi; }

# load NAME URL: checks one answer, warms up, then runs wrk and keeps its output.
load() {
  local name=$1 url=$2
  local answer
  answer=$(curl -sS -X POST "$url" -H 'Content-Type: application/json' -d "$body")
  echo "$name answers: $answer" >&2
  case "$answer" in *'"predictions":[1]'* | *'"predictions":[-1]'* | *'"predictions": [1]'* | *'"predictions": [-1]'*) ;;
    *) echo "$name: unexpected answer" >&2; exit 1 ;;
  esac
  pin "${WRK_CPUS:-}" wrk -t2 -c8 -d3s -s "$work/post.lua" "$url" >/dev/null
  pin "${WRK_CPUS:-}" wrk -t2 -c8 -d"$duration" --latency -s "$work/post.lua" "$url" > "$work/$name.wrk"
  cat "$work/$name.wrk" >&2
}

echo "== KServe $("$python" -c 'import importlib.metadata as m; print(m.version("kserve"))') sklearn server" >&2
kport=$(free_port); gport=$(free_port)
pin "${SERVER_CPUS:-}" "$python" benches/compare/kserve_sklearn_server.py --model_name anomaly-detector \
  --model_dir "$work/anomaly-detector" --http_port "$kport" --grpc_port "$gport" \
  > "$work/kserve.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$kport/v1/models/anomaly-detector" "$work/kserve.log"
load kserve "http://127.0.0.1:$kport/v1/models/anomaly-detector:predict"
kill "${pids[0]}"; wait "${pids[0]}" 2>/dev/null || true

echo "== canopy" >&2
cport=$(free_port)
pin "${SERVER_CPUS:-}" "$target/release/examples/kserve_csv_server" "$work/train.csv" "127.0.0.1:$cport" > "$work/canopy.log" 2>&1 &
pids+=($!)
wait_ready "http://127.0.0.1:$cport/v1/models/anomaly-detector" "$work/canopy.log"
load canopy "http://127.0.0.1:$cport/v1/models/anomaly-detector:predict"

# Figures from wrk's output, latencies in ms.
summary() { # NAME -> "req/s p50 p99"
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec:/ { rps = $2 }
    $1 == "50.000%" || $1 == "50%" { p50 = ms($2) }
    $1 == "99.000%" || $1 == "99%" { p99 = ms($2) }
    END { printf "%s %.3f %.3f\n", rps, p50, p99 }' "$work/$1.wrk"
}
read -r k_rps k_p50 k_p99 < <(summary kserve)
read -r c_rps c_p50 c_p99 < <(summary canopy)
printf '\n| server (%s, wrk -t2 -c8) | req/s | p50 ms | p99 ms |\n|---|---|---|---|\n' "$duration"
printf '| KServe sklearn server | %.0f | %.3f | %.3f |\n' "$k_rps" "$k_p50" "$k_p99"
printf '| canopy | %.0f | %.3f | %.3f |\n' "$c_rps" "$c_p50" "$c_p99"
awk -v kr="$k_rps" -v cr="$c_rps" -v k50="$k_p50" -v c50="$c_p50" -v k99="$k_p99" -v c99="$c_p99" \
  'BEGIN { printf "| canopy / KServe | %.1fx req/s | %.1fx lower | %.1fx lower |\n", cr / kr, k50 / c50, k99 / c99 }'
awk -v r="$c_rps" -v p="$c_p99" 'BEGIN {
  ok = (r >= 20000 && p <= 1.0); printf "\ncanopy budget (>= 20,000 req/s, p99 <= 1 ms): %s\n", ok ? "met" : "NOT met" }'
