"""Reference side of crates/canopy-forest/tests/iforest_parity.rs: scikit-learn's IsolationForest on fixed datasets.

Usage: iforest_parity.py OUTDIR

Writes OUTDIR/{name}.csv (header f0..f{k-1},label; label 1 = planted outlier) for each dataset,
generated from a fixed numpy seed, and OUTDIR/sklearn.json with scikit-learn's ROC-AUC and
flagged fraction at contamination 0.03, mean score_samples and offset_, averaged over
random_state 0..4, plus scikit-learn's own
c(n) values, which the Rust test compares canopy against.
"""

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.ensemble._iforest import _average_path_length
from sklearn.metrics import roc_auc_score

SEEDS = range(5)
CONTAMINATION = 0.03


def blobs(rng):
    """Three 2-d gaussian blobs of different spread, uniform outliers over a wider box."""
    centers = np.array([[0.0, 0.0], [6.0, 2.0], [2.0, 7.0]])
    spreads = np.array([0.6, 1.0, 0.4])
    which = rng.integers(0, 3, size=2000)
    inliers = centers[which] + rng.normal(size=(2000, 2)) * spreads[which, None]
    outliers = rng.uniform(-5.0, 12.0, size=(60, 2))
    return inliers, outliers


def correlated(rng):
    """5-d gaussian with strong correlations; outliers shifted against the correlation."""
    cov = np.full((5, 5), 0.8) + 0.2 * np.eye(5)
    inliers = rng.multivariate_normal(np.zeros(5), cov, size=3000)
    outliers = rng.multivariate_normal(np.zeros(5), cov, size=90)
    outliers += np.array([2.5, -2.5, 2.0, -2.0, 0.0])
    return inliers, outliers


def heavy_tailed(rng):
    """4-d metrics-like data: log-normal rates and Student-t noise; outliers a moderate step up."""
    rates = rng.lognormal(mean=0.0, sigma=1.0, size=(2500, 2))
    noise = rng.standard_t(df=3, size=(2500, 2))
    inliers = np.hstack([rates, noise])
    out_rates = rng.lognormal(mean=1.8, sigma=0.5, size=(75, 2))
    out_noise = rng.standard_t(df=3, size=(75, 2))
    outliers = np.hstack([out_rates, out_noise])
    return inliers, outliers


def multimodal(rng):
    """5-d mixture of four modes; outliers uniform over the modes' bounding box."""
    centers = rng.uniform(-10.0, 10.0, size=(4, 5))
    which = rng.integers(0, 4, size=3000)
    inliers = centers[which] + rng.normal(size=(3000, 5))
    lo, hi = inliers.min(axis=0), inliers.max(axis=0)
    outliers = rng.uniform(lo, hi, size=(90, 5))
    return inliers, outliers


DATASETS = {
    "blobs": blobs,
    "correlated": correlated,
    "heavy_tailed": heavy_tailed,
    "multimodal": multimodal,
}


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261127)
    results = {}
    for name, make in DATASETS.items():
        inliers, outliers = make(rng)
        X = np.vstack([inliers, outliers])
        y = np.concatenate([np.zeros(len(inliers)), np.ones(len(outliers))])
        order = rng.permutation(len(X))
        X, y = X[order], y[order]
        header = ",".join([f"f{i}" for i in range(X.shape[1])] + ["label"])
        np.savetxt(
            out / f"{name}.csv",
            np.column_stack([X, y]),
            delimiter=",",
            header=header,
            comments="",
            fmt="%.17g",
        )
        aucs, flagged, mean_scores, offsets = [], [], [], []
        for seed in SEEDS:
            model = IsolationForest(
                n_estimators=100,
                max_samples=256,
                contamination=CONTAMINATION,
                random_state=seed,
            ).fit(X)
            aucs.append(roc_auc_score(y, -model.score_samples(X)))
            flagged.append(float(np.mean(model.predict(X) == -1)))
            mean_scores.append(float(np.mean(model.score_samples(X))))
            offsets.append(float(model.offset_))
        results[name] = {
            "n_features": int(X.shape[1]),
            "auc": float(np.mean(aucs)),
            "flagged": float(np.mean(flagged)),
            "mean_score_samples": float(np.mean(mean_scores)),
            "offset": float(np.mean(offsets)),
        }
    ns = [1, 2, 3, 10, 255, 256, 257, 10_000]
    report = {
        "seeds": len(SEEDS),
        "contamination": CONTAMINATION,
        "datasets": results,
        "average_path_length": {
            "n": ns,
            "c": [float(c) for c in _average_path_length(np.array(ns))],
        },
    }
    (out / "sklearn.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
