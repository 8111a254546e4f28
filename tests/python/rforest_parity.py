#!/usr/bin/env python3
"""scikit-learn's side of crates/canopy-forest/tests/rforest_parity.rs.

Reads DIR/manifest.json ({"params": {...}, "datasets": [names]}) and, for each name, the headerless
CSVs NAME.train_x.csv, NAME.train_y.csv, NAME.test_x.csv, NAME.test_y.csv written by the Rust test
(the very windows canopy fits). Fits RandomForestRegressor with the given parameters on a 2-D y and
prints one JSON object: {name: {"mae": test MAE over every output}}.

With `--seed-spread SEEDS` (e.g. `0,1,2,3`), run by hand on a directory the test left behind
(target/tmp/rforest_parity_nab), it also fits one forest per seed and reports how much the test MAE
varies by chance alone: the yardstick for the 2% bound and the number of trees in the test.
"""

import argparse
import json
import os

import numpy as np
from sklearn.ensemble import RandomForestRegressor


def load(path):
    return np.atleast_2d(np.loadtxt(path, delimiter=",", ndmin=2))


def main(directory, seeds):
    with open(os.path.join(directory, "manifest.json")) as f:
        manifest = json.load(f)
    results = {}
    for name in manifest["datasets"]:
        part = lambda p: load(os.path.join(directory, f"{name}.{p}.csv"))
        x, y, xt, yt = part("train_x"), part("train_y"), part("test_x"), part("test_y")
        model = RandomForestRegressor(n_jobs=-1, **manifest["params"]).fit(x, y)
        results[name] = {"mae": float(np.mean(np.abs(model.predict(xt) - yt)))}
        if seeds:
            params = dict(manifest["params"])
            maes = []
            for seed in seeds:
                params["random_state"] = seed
                m = RandomForestRegressor(n_jobs=-1, **params).fit(x, y)
                maes.append(float(np.mean(np.abs(m.predict(xt) - yt))))
            results[name]["seed_maes"] = maes
            results[name]["seed_spread_percent"] = 100 * (max(maes) - min(maes)) / float(np.mean(maes))
            results[name]["seed_std_percent"] = 100 * float(np.std(maes, ddof=1)) / float(np.mean(maes))
    print(json.dumps(results))


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("directory")
    ap.add_argument("--seed-spread", default="", help="comma-separated random_state values")
    args = ap.parse_args()
    main(args.directory, [int(s) for s in args.seed_spread.split(",") if s])
