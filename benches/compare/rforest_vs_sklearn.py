#!/usr/bin/env python3
"""Random forest fit: canopy vs scikit-learn on the same data, in the same run, on the same machine.

Budget (README, "Performance"): fitting 8,640 windows x 120 inputs -> 12 outputs with 100 trees,
max_depth 20 (other parameters canopy's defaults) is >= 5x faster in canopy than in scikit-learn
with n_jobs=-1, and the two test MAEs are equal within 2%.

The data: 5 node-like series (cpu, memory, disk, net_rx, net_tx) at a 5-minute step, each a daily
sine plus trend plus noise; windows of 24 steps x 5 features (time-major) -> the next 12 cpu values.
The first 8,640 windows train, the following ones (after a gap of one horizon, so that no test
target was seen in training) test.

Usage (from the crate root):
    cargo build --release --example rforest_fit
    .venv/bin/python benches/compare/rforest_vs_sklearn.py [--trees 100] [--canopy target/release/examples/rforest_fit]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
from sklearn.ensemble import RandomForestRegressor

LOOKBACK, HORIZON, STEPS_PER_DAY = 24, 12, 288


def node_series(steps, seed):
    """steps x 5 feature history shaped like a node's cpu/memory/disk/net_rx/net_tx."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps, dtype=np.float64)
    day = 2 * np.pi * t / STEPS_PER_DAY
    cpu = 0.45 + 0.25 * np.sin(day) + 0.05 * t / steps + rng.normal(0, 0.04, steps)
    memory = 0.60 + 0.10 * np.sin(day - 0.5) + 0.10 * t / steps + rng.normal(0, 0.02, steps)
    disk = 0.30 + 0.20 * t / steps + rng.normal(0, 0.005, steps)
    net_rx = 1e6 * (1.0 + 0.6 * np.sin(day + 0.3)) + rng.normal(0, 5e4, steps)
    net_tx = 6e5 * (1.0 + 0.5 * np.sin(day + 0.2)) + rng.normal(0, 4e4, steps)
    return np.column_stack([cpu, memory, disk, net_rx, net_tx])


def windows(history, target):
    """Input rows: LOOKBACK steps x features, time-major; outputs: the next HORIZON target values."""
    n = history.shape[0] - LOOKBACK - HORIZON + 1
    x = np.stack([history[i : i + LOOKBACK].reshape(-1) for i in range(n)])
    y = np.stack([history[i + LOOKBACK : i + LOOKBACK + HORIZON, target] for i in range(n)])
    return x, y


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train-windows", type=int, default=8640)
    ap.add_argument("--test-windows", type=int, default=1728)
    ap.add_argument("--trees", type=int, default=100)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--canopy", default="target/release/examples/rforest_fit")
    ap.add_argument("--skip-canopy", action="store_true")
    args = ap.parse_args()

    steps = args.train_windows + HORIZON + args.test_windows + LOOKBACK + HORIZON - 1
    x, y = windows(node_series(steps, args.seed), target=0)
    x_train, y_train = x[: args.train_windows], y[: args.train_windows]
    x_test, y_test = x[args.train_windows + HORIZON :], y[args.train_windows + HORIZON :]
    params = dict(n_estimators=args.trees, max_depth=20, min_samples_split=5, min_samples_leaf=2,
                  max_features=1.0, bootstrap=True)
    print(f"data: {x_train.shape[0]} train windows x {x_train.shape[1]} inputs -> {y_train.shape[1]} outputs, "
          f"{x_test.shape[0]} test windows; {args.trees} trees; {os.cpu_count()} cpus")

    results = {}
    if not args.skip_canopy:
        with tempfile.TemporaryDirectory() as tmp:
            paths = {}
            for name, arr in [("train_x", x_train), ("train_y", y_train), ("test_x", x_test), ("test_y", y_test)]:
                paths[name] = os.path.join(tmp, name + ".csv")
                np.savetxt(paths[name], arr, delimiter=",", fmt="%.17g")
            cmd = [args.canopy, paths["train_x"], paths["train_y"], paths["test_x"], paths["test_y"],
                   "--n-estimators", str(args.trees), "--max-depth", "20", "--seed", str(args.seed)]
            out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
            results["canopy"] = json.loads(out.strip().splitlines()[-1])
        c = results["canopy"]
        print(f"canopy:       fit {c['fit_seconds']:8.3f} s, test MAE {c['mae']:.6f}  "
              f"({c['threads']} threads; {c['nodes']} nodes, model {c['model_bytes'] / 2**20:.1f} MiB)")

    model = RandomForestRegressor(n_jobs=-1, random_state=args.seed, **params)
    start = time.perf_counter()
    model.fit(x_train, y_train)
    fit_seconds = time.perf_counter() - start
    mae = float(np.mean(np.abs(model.predict(x_test) - y_test)))
    results["sklearn"] = {"fit_seconds": fit_seconds, "mae": mae}
    print(f"scikit-learn: fit {fit_seconds:8.3f} s, test MAE {mae:.6f}  (n_jobs=-1)")

    persistence = float(np.mean(np.abs(x_test[:, -5][:, None] - y_test)))
    print(f"persistence (last value) test MAE {persistence:.6f}")
    if "canopy" in results:
        ratio = fit_seconds / results["canopy"]["fit_seconds"]
        rel = results["canopy"]["mae"] / mae - 1.0
        print(f"speed-up: canopy is {ratio:.2f}x faster (budget >= 5x): {'MET' if ratio >= 5 else 'MISSED'}")
        print(f"MAE: canopy vs scikit-learn {rel * 100:+.2f}% (budget within 2%): {'MET' if abs(rel) <= 0.02 else 'MISSED'}")
        return 0 if ratio >= 5 and abs(rel) <= 0.02 else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
