"""Reference side of tests/cli_score.rs: scikit-learn's IsolationForest fit on one CSV, scoring another.

Usage: score_parity.py OUTDIR

Writes OUTDIR/fit.csv and OUTDIR/input.csv in canopy's CSV format (timestamp as Unix seconds,
then columns net, cpu, mem: deliberately not the model's feature order, and the fit file's rows
shuffled in time), OUTDIR/labels.csv (timestamp,label for the input rows; 1 = planted outlier),
and OUTDIR/sklearn.json with scikit-learn's ROC-AUC and flagged fraction on the input, its mean
score_samples and offset_, averaged over random_state 0..4, with the model's features in the
order [cpu, mem, net] that the test's config gives.
"""

import json
import sys
from pathlib import Path

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.metrics import roc_auc_score

SEEDS = range(5)
CONTAMINATION = 0.03
T0 = 1_700_000_000


def metrics_like(rng, n_in, n_out):
    """cpu, mem, net: correlated load with log-normal traffic; outliers break the correlation."""
    load = rng.uniform(0.1, 0.9, size=n_in)
    cpu = load + rng.normal(scale=0.05, size=n_in)
    mem = 0.3 + 0.5 * load + rng.normal(scale=0.03, size=n_in)
    net = np.exp(10 + 2 * load + rng.normal(scale=0.2, size=n_in))
    inliers = np.column_stack([cpu, mem, net])
    oload = rng.uniform(0.1, 0.9, size=n_out)
    outliers = np.column_stack(
        [
            oload + rng.normal(scale=0.05, size=n_out),
            0.3 + 0.5 * (1 - oload) + rng.normal(scale=0.03, size=n_out),
            np.exp(10 + 2 * oload + rng.normal(scale=0.2, size=n_out)) * rng.choice([0.1, 8.0], size=n_out),
        ]
    )
    return inliers, outliers


def write(path, times, X):
    """canopy's CSV with columns net, cpu, mem (X is [cpu, mem, net])."""
    with open(path, "w") as f:
        f.write("timestamp,net,cpu,mem\n")
        for t, (cpu, mem, net) in zip(times, X):
            f.write(f"{t},{float(net)!r},{float(cpu)!r},{float(mem)!r}\n")


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261127)

    fin, fout = metrics_like(rng, 3000, 90)
    X_fit = np.vstack([fin, fout])
    fit_times = T0 + 60 * rng.permutation(len(X_fit))
    write(out / "fit.csv", fit_times, X_fit)

    iin, iout = metrics_like(rng, 1000, 30)
    X = np.vstack([iin, iout])
    y = np.concatenate([np.zeros(len(iin)), np.ones(len(iout))])
    order = rng.permutation(len(X))
    X, y = X[order], y[order]
    times = T0 + 86_400 + 60 * np.arange(len(X))
    write(out / "input.csv", times, X)
    with open(out / "labels.csv", "w") as f:
        f.write("timestamp,label\n")
        for t, label in zip(times, y):
            f.write(f"{t},{int(label)}\n")

    aucs, flagged, mean_scores, offsets = [], [], [], []
    for seed in SEEDS:
        model = IsolationForest(
            n_estimators=100, max_samples=256, contamination=CONTAMINATION, random_state=seed
        ).fit(X_fit)
        scores = model.score_samples(X)
        aucs.append(roc_auc_score(y, -scores))
        flagged.append(float(np.mean(model.predict(X) == -1)))
        mean_scores.append(float(np.mean(scores)))
        offsets.append(float(model.offset_))
    report = {
        "seeds": len(SEEDS),
        "contamination": CONTAMINATION,
        "auc": float(np.mean(aucs)),
        "flagged": float(np.mean(flagged)),
        "mean_score_samples": float(np.mean(mean_scores)),
        "offset": float(np.mean(offsets)),
    }
    (out / "sklearn.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
