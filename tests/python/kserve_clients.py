"""Real KServe clients against a running canopy: driven by tests/kserve_clients.rs.

Usage: kserve_clients.py HOST:PORT

Runs tritonclient.http (binary and JSON mode: health, metadata, infer on both models, the
detector's `score` output), the kserve SDK's InferenceRESTClient (v1 and v2), and the old
platform's curl call. Prints one `ok <check>` line per passed check and one JSON line of
results; any failed check raises, so the process exits non-zero.
"""

import asyncio
import json
import subprocess
import sys

import numpy as np
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig
from kserve.protocol.infer_type import RequestedOutput

DETECTOR = "anomaly-detector"
FORECASTER = "predictive-analytics"
ROWS = np.array([[0.5, 0.6, 0.01, 100.0, 80.0], [50.0, -40.0, 9.0, 1e6, -1e6]])
WINDOW = np.array(
    [[0.5 + 0.2 * np.sin(k / 30 * 2 * np.pi), 0.6 + 0.1 * np.cos(k / 30 * 2 * np.pi), 0.4, 100.0, 80.0]
     for k in range(24)]
).reshape(1, 120)


def ok(what):
    print(f"ok {what}", flush=True)


def check_labels(labels, what):
    labels = np.asarray(labels).reshape(-1)
    assert labels.shape == (2,), f"{what}: {labels}"
    assert set(labels.tolist()) <= {-1, 1}, f"{what}: {labels}"
    assert labels[1] == -1, f"{what}: the outlier must be -1, got {labels}"


def check_forecast(values, what):
    values = np.asarray(values)
    assert values.shape == (1, 12), f"{what}: shape {values.shape}"
    assert np.all((values > 0.2) & (values < 0.8)), f"{what}: {values}"


def tritonclient_checks(addr, results):
    client = triton.InferenceServerClient(url=addr)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready(DETECTOR) and client.is_model_ready(FORECASTER)
    ok("triton health")
    meta = client.get_server_metadata()
    assert meta["name"] == "canopy", meta
    model = client.get_model_metadata(DETECTOR)
    assert model["inputs"][0]["shape"] == [-1, 5], model
    assert [o["name"] for o in model["outputs"]] == ["output-0", "score", "decision_function"], model
    # the features a row carries, in order (extra to the protocol's required fields)
    assert len(model["parameters"]["features"].split(",")) == 5, model
    ok("triton metadata")

    for binary in (True, False):
        mode = "binary" if binary else "json"
        inp = triton.InferInput("input-0", list(ROWS.shape), "FP32")
        inp.set_data_from_numpy(ROWS.astype(np.float32), binary_data=binary)
        # No outputs named: tritonclient asks for output-0 in binary.
        res = client.infer(DETECTOR, [inp], request_id=f"triton-{mode}")
        check_labels(res.as_numpy("output-0"), f"triton {mode} default output")
        assert res.get_response()["id"] == f"triton-{mode}"
        outputs = [
            triton.InferRequestedOutput("output-0", binary_data=binary),
            triton.InferRequestedOutput("score", binary_data=binary),
            triton.InferRequestedOutput("decision_function", binary_data=binary),
        ]
        res = client.infer(DETECTOR, [inp], outputs=outputs)
        labels = res.as_numpy("output-0")
        score = res.as_numpy("score")
        decision = res.as_numpy("decision_function")
        check_labels(labels, f"triton {mode} output-0")
        assert score.dtype == np.float64 and np.all((score > 0) & (score <= 1)), score
        assert score[1] > score[0], score
        assert np.array_equal(labels, np.where(decision < 0, -1, 1)), (labels, decision)
        results[f"triton_{mode}_score"] = score.tolist()
        ok(f"triton {mode} detector")

        win = triton.InferInput("input-0", [1, 120], "FP64")
        win.set_data_from_numpy(WINDOW, binary_data=binary)
        res = client.infer(FORECASTER, [win])
        check_forecast(res.as_numpy("output-0"), f"triton {mode} forecaster")
        results[f"triton_{mode}_forecast"] = res.as_numpy("output-0").tolist()
        ok(f"triton {mode} forecaster")

    try:
        client.infer(DETECTOR, [inp], outputs=[triton.InferRequestedOutput("nope")])
        raise AssertionError("an unknown output must fail")
    except triton.InferenceServerException as e:
        assert "unknown output" in str(e), e
    ok("triton unknown output")


async def kserve_sdk_checks(base, results):
    v1 = InferenceRESTClient(RESTConfig(protocol="v1"))
    assert await v1.is_server_live(base)
    assert await v1.is_model_ready(base, DETECTOR)
    res = await v1.infer(base, {"instances": ROWS.tolist()}, model_name=DETECTOR)
    check_labels(res["predictions"], "kserve v1 detector")
    res = await v1.infer(base, {"instances": WINDOW.tolist()}, model_name=FORECASTER)
    check_forecast(res["predictions"], "kserve v1 forecaster")
    res = await v1.explain(base, DETECTOR, {"instances": ROWS.tolist()})
    assert len(res["explanations"]) == 2, res
    assert abs(sum(res["explanations"][0].values()) - 1.0) < 1e-9, res
    ok("kserve v1")
    await v1.close()

    v2 = InferenceRESTClient(RESTConfig(protocol="v2"))
    assert await v2.is_server_live(base)
    assert await v2.is_server_ready(base)
    assert await v2.is_model_ready(base, DETECTOR)
    for binary in (False, True):
        mode = "binary" if binary else "json"
        inp = InferInput(name="input-0", shape=list(ROWS.shape), datatype="FP64")
        inp.set_data_from_numpy(ROWS, binary_data=binary)
        req = InferRequest(
            model_name=DETECTOR,
            infer_inputs=[inp],
            request_id=f"sdk-{mode}",
            request_outputs=[RequestedOutput("output-0"), RequestedOutput("score")],
        )
        res = await v2.infer(base, req, model_name=DETECTOR)
        assert res.id == f"sdk-{mode}", res.id
        by_name = {o.name: o for o in res.outputs}
        check_labels(by_name["output-0"].as_numpy(), f"kserve v2 {mode}")
        assert by_name["score"].as_numpy().shape == (2,)
        win = InferInput(name="input-0", shape=[1, 120], datatype="FP64")
        win.set_data_from_numpy(WINDOW, binary_data=binary)
        res = await v2.infer(base, InferRequest(model_name=FORECASTER, infer_inputs=[win]), model_name=FORECASTER)
        check_forecast(res.outputs[0].as_numpy(), f"kserve v2 {mode} forecaster")
        ok(f"kserve v2 {mode}")
    await v2.close()


def curl_checks(base, results):
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", f"{base}/v1/models/{DETECTOR}:predict",
         "-H", "Content-Type: application/json",
         "-d", '{"instances": [[0.5, 0.6, 0.4, 100, 80]]}'],
        check=True, capture_output=True, text=True,
    ).stdout
    body = json.loads(out)
    assert body in ({"predictions": [-1]}, {"predictions": [1]}), out
    results["curl_detector"] = body
    instance = json.dumps({"instances": WINDOW.tolist()})
    out = subprocess.run(
        ["curl", "-sS", "-X", "POST", f"{base}/v1/models/{FORECASTER}:predict",
         "-H", "Content-Type: application/json", "-d", instance],
        check=True, capture_output=True, text=True,
    ).stdout
    body = json.loads(out)
    assert len(body["predictions"]) == 1 and len(body["predictions"][0]) == 12, out
    assert all(isinstance(v, float) for v in body["predictions"][0]), out
    ok("curl")


def main():
    addr = sys.argv[1]
    base = f"http://{addr}"
    results = {}
    tritonclient_checks(addr, results)
    asyncio.run(kserve_sdk_checks(base, results))
    curl_checks(base, results)
    print(json.dumps(results), flush=True)


if __name__ == "__main__":
    main()
