#!/usr/bin/env python3
"""scikit-learn's side of tests/rforest_parity.rs.

Reads DIR/manifest.json ({"params": {...}, "datasets": [names]}) and, for each name, the headerless
CSVs NAME.train_x.csv, NAME.train_y.csv, NAME.test_x.csv, NAME.test_y.csv written by the Rust test
(the very windows canopy fits). Fits RandomForestRegressor with the given parameters on a 2-D y and
prints one JSON object: {name: {"mae": test MAE over every output}}.
"""

import json
import os
import sys

import numpy as np
from sklearn.ensemble import RandomForestRegressor


def load(path):
    return np.atleast_2d(np.loadtxt(path, delimiter=",", ndmin=2))


def main(directory):
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    results = {}
    for name in manifest["datasets"]:
        part = lambda p: load(os.path.join(directory, f"{name}.{p}.csv"))
        x, y, xt, yt = part("train_x"), part("train_y"), part("test_x"), part("test_y")
        model = RandomForestRegressor(n_jobs=-1, **manifest["params"]).fit(x, y)
        results[name] = {"mae": float(np.mean(np.abs(model.predict(xt) - yt)))}
    print(json.dumps(results))


if __name__ == "__main__":
    main(sys.argv[1])
