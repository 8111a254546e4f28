#!/usr/bin/env bash
# Memory at 100,000 matched series x 30 samples, through the real remote-write HTTP path: starts
# the release agent (default features and models, no training source) and sends it
# `examples/memory_100k.rs`'s requests (2,000 series of one sample each per request, 30 rounds at
# a 30 s spacing, every series selected by a default feature), then reads the agent's peak RSS
# (VmHWM) from /proc and its series and sample counts from /metrics. Then the same requests to
# VictoriaMetrics (and Prometheus 2.42 with `--with-prometheus`), which store every sample sent.
#
#   [CANOPY_BIN=… LOAD_BIN=…] benches/compare/memory_100k_http.sh [series] [samples_per_series] [--with-prometheus]
set -euo pipefail
cd "$(dirname "$0")/../.."

series=${1:-100000}
per=${2:-30}
with_prom=${3:-}
target=${CARGO_TARGET_DIR:-target}

# CANOPY_BIN and LOAD_BIN run given binaries (e.g. an older build, for a before/after in one run).
if [ -z "${CANOPY_BIN:-}" ] || [ -z "${LOAD_BIN:-}" ]; then
  cargo build --release -q --bin canopy --example memory_100k
fi
canopy=${CANOPY_BIN:-$target/release/canopy}
load=${LOAD_BIN:-$target/release/examples/memory_100k}

tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_http() { for _ in $(seq 100); do curl -sf "$1" >/dev/null && return 0; sleep 0.1; done; echo "not ready: $1" >&2; return 1; }
kib() { awk -v f="$2:" '$1 == f {print $2}' "/proc/$1/status"; }
mib() { python3 -c "print(f'{$1/1024:.1f}')"; }
metric() { curl -sf "$1" | awk -v m="$2" '$1 == m {printf "%d", $2}'; }

# canopy: the default features and models; no training source, so what is measured is the agent
# holding the stream (training on synthetic history would add a forest fit's transient memory).
cat > "$tmp/canopy.toml" <<TOML
[source]
data_source = "none"
TOML
p=$(port)
RUST_LOG=warn "$canopy" run --config "$tmp/canopy.toml" --listen "127.0.0.1:$p" \
  --model-dir "$tmp/models" & pids+=($!)
pid=${pids[-1]}
wait_http "http://127.0.0.1:$p/-/ready"
idle=$(kib "$pid" VmRSS)
sent=$("$load" --url "http://127.0.0.1:$p/api/v1/write" "$series" "$per")
sleep 12 # one sweep (every 10 s) publishes the store's gauges
active=$(metric "http://127.0.0.1:$p/metrics" canopy_active_series)
held=$(metric "http://127.0.0.1:$p/metrics" canopy_samples_held)
curl -sf "http://127.0.0.1:$p/metrics" | grep -E '^canopy_samples_(appended|dropped)_total' >&2 || true
peak=$(kib "$pid" VmHWM)
rss=$(kib "$pid" VmRSS)
kill "$pid"
python3 - "$idle" "$peak" "$rss" "$active" "$held" "$sent" <<'PY'
import json, sys
idle, peak, rss, active, held = (int(x or 0) for x in sys.argv[1:6])
sent = json.loads(sys.argv[6])
print(json.dumps({"receiver": "canopy", **sent, "active_series": active, "samples_held": held,
    "rss_idle_mib": round(idle / 1024, 1), "peak_rss_mib": round(peak / 1024, 1),
    "rss_after_mib": round(rss / 1024, 1),
    "bytes_per_series_over_idle": round((peak - idle) * 1024 / max(active, 1)),
    "bytes_per_sample_over_idle": round((peak - idle) * 1024 / max(held, 1), 1)}))
PY

other() { # name pid write_url
  local idle sent peak
  idle=$(kib "$2" VmRSS)
  sent=$("$load" --url "$3" "$series" "$per")
  sleep 12
  peak=$(kib "$2" VmHWM)
  python3 - "$1" "$idle" "$peak" "$sent" "$series" "$per" <<'PY'
import json, sys
name, idle, peak = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sent, series, per = json.loads(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
print(json.dumps({"receiver": name, **sent, "rss_idle_mib": round(idle / 1024, 1),
    "peak_rss_mib": round(peak / 1024, 1),
    "bytes_per_series_over_idle": round((peak - idle) * 1024 / series),
    "bytes_per_sample_over_idle": round((peak - idle) * 1024 / (series * per), 1)}))
PY
}

if command -v victoria-metrics >/dev/null 2>&1; then
  p=$(port)
  victoria-metrics -httpListenAddr="127.0.0.1:$p" -storageDataPath="$tmp/vm" -loggerLevel=ERROR 2>/dev/null & pids+=($!)
  wait_http "http://127.0.0.1:$p/health"
  other victoriametrics "${pids[-1]}" "http://127.0.0.1:$p/api/v1/write"
  kill "${pids[-1]}"
fi

if [ "$with_prom" = "--with-prometheus" ]; then
  p=$(port); printf 'global:\n  scrape_interval: 1m\n' > "$tmp/prometheus.yml"
  prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/prom" --web.listen-address="127.0.0.1:$p" \
    --web.enable-remote-write-receiver --log.level=warn 2>/dev/null & pids+=($!)
  wait_http "http://127.0.0.1:$p/-/ready"
  other prometheus "${pids[-1]}" "http://127.0.0.1:$p/api/v1/write"
  kill "${pids[-1]}"
fi
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
