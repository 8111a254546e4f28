"""KServe's Python model server with a scikit-learn model, as KServe's sklearnserver runs it:
a `kserve.Model` subclass that joblib-loads the model file from --model_dir and answers V1
`:predict` with `model.predict(instances)`.

Usage: kserve_sklearn_server.py --model_name NAME --model_dir DIR --http_port PORT
"""

import argparse
from pathlib import Path

import joblib
import kserve
import numpy as np
from kserve.utils.utils import get_predict_input, get_predict_response


class SKLearnModel(kserve.Model):
    def __init__(self, name, model_dir):
        super().__init__(name)
        self.model_dir = Path(model_dir)
        self._model = None

    def load(self):
        files = sorted(self.model_dir.glob("*.joblib")) + sorted(self.model_dir.glob("*.pkl"))
        self._model = joblib.load(files[0])
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        instances = get_predict_input(payload)
        result = self._model.predict(np.asarray(instances))
        return get_predict_response(payload, result, self.name)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", required=True)
    args, _ = parser.parse_known_args()
    model = SKLearnModel(args.model_name, args.model_dir)
    model.load()
    kserve.ModelServer().start([model])
