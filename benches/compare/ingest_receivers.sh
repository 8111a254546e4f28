#!/usr/bin/env bash
# Remote-write ingest side by side: canopy, Prometheus 2.42's receiver and VictoriaMetrics, all
# from this machine's packages, fed the same Prometheus-shaped requests (one sample per
# TimeSeries, series repeated, 2,000 samples per request over 10,000 series, 46% of the series
# matched by canopy's default features) by the same load generator over 8 connections, one
# receiver after the other, each the best of `rounds` runs (a fresh receiver each run).
# Prints samples/s accepted, request latency, peak RSS, and the CPU seconds the receiver and the
# load generator each used while it ran (samples per receiver CPU-second is the cost of a sample
# whatever the two share of the cores), for each, and canopy's ratios.
#
# canopy is measured in its steady state: the load starts once both default models answer
# ready, after the start's first training (several seconds of CPU for the forecaster, on the
# evaluation thread), as the other receivers are loaded once they answer ready.
#
# With CANOPY_BEFORE=path/to/an/older/canopy, that build runs too in every round (as
# `canopy-before`), for a before/after in the same run.
#
#   [CANOPY_BEFORE=…] benches/compare/ingest_receivers.sh [connections] [requests_per_connection] [samples_per_request] [series_per_connection] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."

conns=${1:-8}
reqs=${2:-400}
samples=${3:-2000}
series=${4:-1250}
rounds=${5:-2}

for pkg in prometheus victoria-metrics; do
  command -v "$pkg" >/dev/null 2>&1 || { DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$pkg" >/dev/null; }
done
target=${CARGO_TARGET_DIR:-target}
cargo build --release -q --bin canopy --example remote_write_load
tmp=$(mktemp -d)
# Copies, as a shared target directory may be rebuilt by another checkout during the run.
cp "$target/release/canopy" "$target/release/examples/remote_write_load" "$tmp/"
load=$tmp/remote_write_load

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { # url [tenths of a second]
  for _ in $(seq "${2:-100}"); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1
}
peak_rss_mib() { awk '/VmHWM/ {printf "%.1f", $2/1024}' "/proc/$1/status"; }
# User and system CPU ticks (USER_HZ, 100 a second) of a process, all its threads.
cpu_ticks() { sed 's/.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

run() { # name pid write_url: one round, the best round's samples/s kept in $tmp/NAME.sps
  local out sps before cpu
  before=$(cpu_ticks "$2")
  out=$("$load" "$3" "$conns" "$reqs" "$samples" "$series")
  cpu=$(python3 -c "print(($(cpu_ticks "$2") - $before) / 100)")
  printf '%-16s %s peak_rss_mib=%s receiver_cpu_seconds=%s samples_per_receiver_cpu_second=%s\n' "$1" "$out" \
    "$(peak_rss_mib "$2")" "$cpu" "$(python3 -c "print(round($conns * $reqs * $samples / max($cpu, 0.01)))")"
  sps=$(echo "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["samples_per_second"])')
  best=$(cat "$tmp/$1.sps" 2>/dev/null || echo 0)
  python3 -c "print(max($sps, $best))" > "$tmp/$1.sps"
}
stop() { kill "$1"; wait "$1" 2>/dev/null || true; }
run_canopy() { # name binary round: one round against a fresh agent
  local p; p=$(port)
  RUST_LOG=warn "$2" run --listen "127.0.0.1:$p" --model-dir "$tmp/$1-models$3" & pids+=($!)
  wait_http "http://127.0.0.1:$p/-/healthy"
  for model in anomaly-detector predictive-analytics; do
    wait_http "http://127.0.0.1:$p/v2/models/$model/ready" 1200
  done
  run "$1" "${pids[-1]}" "http://127.0.0.1:$p/api/v1/write"
  stop "${pids[-1]}"
}

for round in $(seq "$rounds"); do
  echo "round $round of $rounds"
  run_canopy canopy "$tmp/canopy" "$round"
  if [ -n "${CANOPY_BEFORE:-}" ]; then
    run_canopy canopy-before "$CANOPY_BEFORE" "$round"
  fi

  p=$(port); printf 'global:\n  scrape_interval: 1m\n' > "$tmp/prometheus.yml"
  prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prom$round" --web.listen-address="127.0.0.1:$p" \
    --web.enable-remote-write-receiver --log.level=warn 2>/dev/null & pids+=($!)
  wait_http "http://127.0.0.1:$p/-/ready"
  run prometheus "${pids[-1]}" "http://127.0.0.1:$p/api/v1/write"
  stop "${pids[-1]}"

  p=$(port)
  victoria-metrics -httpListenAddr="127.0.0.1:$p" -storageDataPath="$tmp/vm$round" -loggerLevel=ERROR 2>/dev/null & pids+=($!)
  wait_http "http://127.0.0.1:$p/health"
  run victoriametrics "${pids[-1]}" "http://127.0.0.1:$p/api/v1/write"
  stop "${pids[-1]}"
done

c=$(cat "$tmp/canopy.sps")
printf 'best of %s rounds, samples/s: canopy %s  prometheus %s  victoriametrics %s\n' "$rounds" "$c" \
  "$(cat "$tmp/prometheus.sps")" "$(cat "$tmp/victoriametrics.sps")"
printf 'canopy / prometheus = %.2fx   canopy / victoriametrics = %.2fx   (machine: %s cores, load %s)\n' \
  "$(python3 -c "print($c/$(cat "$tmp/prometheus.sps"))")" "$(python3 -c "print($c/$(cat "$tmp/victoriametrics.sps"))")" \
  "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)"
if [ -n "${CANOPY_BEFORE:-}" ]; then
  b=$(cat "$tmp/canopy-before.sps")
  printf 'canopy-before %s samples/s: canopy / canopy-before = %.2fx\n' "$b" "$(python3 -c "print($c/$b)")"
fi
