"""canopy's isolation forest against scikit-learn's on the same data, same machine, same run.

Usage: python benches/compare/iforest_vs_sklearn.py [--rows 10000] [--seeds 3] [--repeats 7]

Generates 5-d data (correlated gaussian inliers, 3% shifted outliers, fixed numpy seed), fits
both models on it with default parameters (100 trees, 256 samples, contamination 0.03) and scores
a held-out set. canopy runs through `cargo run --release --example iforest_fit_score` (honouring
CARGO_TARGET_DIR). Prints ROC-AUC, fit time, batch and single-row scoring time for each, and the
ratios scikit-learn / canopy.
"""

import argparse
import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

CRATE = Path(__file__).resolve().parents[2]


def make_data(rng, n):
    cov = np.full((5, 5), 0.6) + 0.4 * np.eye(5)
    n_out = int(0.03 * n)
    inliers = rng.multivariate_normal(np.zeros(5), cov, size=n - n_out)
    outliers = rng.multivariate_normal(np.zeros(5), cov, size=n_out) + np.array([2.0, -2.0, 1.5, 0.0, -1.5])
    X = np.vstack([inliers, outliers])
    y = np.concatenate([np.zeros(len(inliers)), np.ones(n_out)])
    order = rng.permutation(n)
    return X[order], y[order]


def write_csv(path, X):
    header = ",".join(f"f{i}" for i in range(X.shape[1]))
    np.savetxt(path, X, delimiter=",", header=header, comments="", fmt="%.17g")


def median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def sklearn_side(X_fit, X_score, y_score, seed, repeats):
    model = None

    def fit():
        nonlocal model
        model = IsolationForest(n_estimators=100, max_samples=256, contamination=0.03, random_state=seed).fit(X_fit)

    fit_s = median_time(fit, repeats)
    batch_s = median_time(lambda: model.score_samples(X_score), repeats)
    single_rows = X_score[:200]
    single_s = median_time(lambda: [model.score_samples(r.reshape(1, -1)) for r in single_rows], max(1, repeats // 3))
    auc = roc_auc_score(y_score, -model.score_samples(X_score))
    return {
        "auc": auc,
        "fit_ms": fit_s * 1e3,
        "score_batch_us_per_row": batch_s * 1e6 / len(X_score),
        "score_single_us_per_row": single_s * 1e6 / len(single_rows),
    }


def canopy_side(fit_csv, score_csv, y_score, seed, repeats):
    out = subprocess.run(
        ["cargo", "run", "--quiet", "--release", "--example", "iforest_fit_score", "--",
         str(fit_csv), str(score_csv), str(seed), str(repeats)],
        cwd=CRATE, check=True, capture_output=True, text=True,
    )
    report = json.loads(out.stdout)
    report["auc"] = roc_auc_score(y_score, -np.array(report.pop("score_samples")))
    return report


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()

    rng = np.random.default_rng(7)
    X_fit, _ = make_data(rng, args.rows)
    X_score, y_score = make_data(rng, args.rows)
    keys = ["auc", "fit_ms", "score_batch_us_per_row", "score_single_us_per_row"]
    results = {"scikit-learn": {k: [] for k in keys}, "canopy": {k: [] for k in keys}}
    with tempfile.TemporaryDirectory() as tmp:
        fit_csv, score_csv = Path(tmp) / "fit.csv", Path(tmp) / "score.csv"
        write_csv(fit_csv, X_fit)
        write_csv(score_csv, X_score)
        for seed in range(args.seeds):
            for name, side in [
                ("scikit-learn", sklearn_side(X_fit, X_score, y_score, seed, args.repeats)),
                ("canopy", canopy_side(fit_csv, score_csv, y_score, seed, args.repeats)),
            ]:
                for k in keys:
                    results[name][k].append(side[k])

    print(f"{args.rows} fit rows, {args.rows} scored rows, 5 features, 100 trees x 256, "
          f"{args.seeds} seeds, median of {args.repeats}; cores: {os.cpu_count()}")
    print(f"{'':26}{'scikit-learn':>14}{'canopy':>14}{'sklearn/canopy':>16}")
    for k in keys:
        sk = statistics.mean(results["scikit-learn"][k])
        ca = statistics.mean(results["canopy"][k])
        ratio = "" if k == "auc" else f"{sk / ca:.1f}x"
        print(f"{k:26}{sk:14.4f}{ca:14.4f}{ratio:>16}")


if __name__ == "__main__":
    main()
