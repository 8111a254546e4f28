"""Training data and the scikit-learn model for benches/compare/kserve_v1_wrk.sh.

Usage: kserve_v1_model.py OUTDIR

Writes OUTDIR/train.csv (header cpu,memory,restarts,net_rx,net_tx; 2,000 rows from a fixed
numpy seed, 3% planted anomalies) and OUTDIR/anomaly-detector/model.joblib: scikit-learn's
IsolationForest(n_estimators=100, max_samples=256, contamination=0.03) fitted on those rows,
the file KServe's sklearn server loads. canopy fits the same setup on the same CSV.
"""

import sys
from pathlib import Path

import joblib
import numpy as np
from sklearn.ensemble import IsolationForest

out = Path(sys.argv[1])
rng = np.random.default_rng(42)
n, k = 2000, 60
t = np.arange(n)
day = np.sin(t / 1440 * 2 * np.pi)
rows = np.column_stack([
    0.5 + 0.2 * day + rng.normal(0, 0.03, n),
    0.6 + 0.1 * day + rng.normal(0, 0.02, n),
    np.abs(rng.normal(0, 0.01, n)),
    100 + 20 * day + rng.normal(0, 5, n),
    80 + 15 * day + rng.normal(0, 4, n),
])
idx = rng.choice(n, k, replace=False)
rows[idx] *= rng.uniform(2.0, 4.0, size=(k, 1))
(out / "anomaly-detector").mkdir(parents=True, exist_ok=True)
np.savetxt(out / "train.csv", rows, delimiter=",", header="cpu,memory,restarts,net_rx,net_tx",
           comments="", fmt="%.10g")
model = IsolationForest(n_estimators=100, max_samples=256, contamination=0.03, random_state=42)
model.fit(rows)
joblib.dump(model, out / "anomaly-detector" / "model.joblib")
