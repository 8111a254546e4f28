"""Real KServe clients against canopy behind a bearer token and HTTPS: driven by tests/security.rs.

Usage: auth_clients.py HOST:PORT CA_FILE TOKEN

tritonclient.http, the kserve SDK's InferenceRESTClient (v1 and v2) and curl, each verifying the
server's certificate against CA_FILE: the health endpoints answer without the token (probes carry
none), inference is refused with 401 without it and answered with `Authorization: Bearer TOKEN`.
Prints one `ok <check>` line per passed check; any failed check raises, so the process exits
non-zero.
"""

import asyncio
import json
import subprocess
import sys

import httpx
import numpy as np
import tritonclient.http as triton
from kserve import InferenceRESTClient, InferInput, InferRequest, RESTConfig

DETECTOR = "anomaly-detector"
ROWS = np.array([[0.5, 0.6, 0.01, 100.0, 80.0], [50.0, -40.0, 9.0, 1e6, -1e6]])


def ok(what):
    print(f"ok {what}", flush=True)


def check_labels(labels, what):
    labels = np.asarray(labels).reshape(-1)
    assert labels.shape == (2,) and set(labels.tolist()) <= {-1, 1}, f"{what}: {labels}"


def tritonclient_checks(addr, ca, token):
    client = triton.InferenceServerClient(url=addr, ssl=True, ssl_options={"ca_certs": ca})
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(DETECTOR)
    ok("triton health without the token")
    for binary in (True, False):
        inp = triton.InferInput("input-0", list(ROWS.shape), "FP64")
        inp.set_data_from_numpy(ROWS, binary_data=binary)
        try:
            client.infer(DETECTOR, [inp])
            raise AssertionError("infer without the token must be refused")
        except triton.InferenceServerException as e:
            assert e.status() == "401" and "Bearer" in e.message(), e
        res = client.infer(DETECTOR, [inp], headers={"Authorization": f"Bearer {token}"})
        check_labels(res.as_numpy("output-0"), "triton")
    ok("triton infer with the token")


async def kserve_sdk_checks(base, ca, token):
    auth = {"Authorization": f"Bearer {token}"}
    v1 = InferenceRESTClient(RESTConfig(protocol="v1", verify=ca))
    assert await v1.is_server_live(base)
    assert await v1.is_model_ready(base, DETECTOR)
    try:
        await v1.infer(base, {"instances": ROWS.tolist()}, model_name=DETECTOR)
        raise AssertionError("v1 predict without the token must be refused")
    except httpx.HTTPStatusError as e:
        assert e.response.status_code == 401, e
        assert e.response.headers["www-authenticate"].startswith("Bearer"), e.response.headers
    res = await v1.infer(base, {"instances": ROWS.tolist()}, model_name=DETECTOR, headers=auth)
    check_labels(res["predictions"], "kserve v1")
    await v1.close()
    ok("kserve v1 with the token")

    v2 = InferenceRESTClient(RESTConfig(protocol="v2", verify=ca))
    assert await v2.is_server_live(base) and await v2.is_server_ready(base)
    assert await v2.is_model_ready(base, DETECTOR)
    inp = InferInput(name="input-0", shape=list(ROWS.shape), datatype="FP64")
    inp.set_data_from_numpy(ROWS, binary_data=True)
    req = InferRequest(model_name=DETECTOR, infer_inputs=[inp])
    try:
        await v2.infer(base, req, model_name=DETECTOR)
        raise AssertionError("v2 infer without the token must be refused")
    except httpx.HTTPStatusError as e:
        assert e.response.status_code == 401, e
    res = await v2.infer(base, req, model_name=DETECTOR, headers=auth)
    check_labels(res.outputs[0].as_numpy(), "kserve v2")
    await v2.close()
    ok("kserve v2 with the token")


def curl_checks(base, ca, token):
    def curl(*extra):
        return subprocess.run(
            ["curl", "-sS", "--cacert", ca, "-X", "POST", f"{base}/v1/models/{DETECTOR}:predict",
             "-H", "Content-Type: application/json",
             "-d", '{"instances": [[0.5, 0.6, 0.4, 100, 80]]}', *extra],
            check=True, capture_output=True, text=True,
        ).stdout

    refused = json.loads(curl())
    assert "error" in refused, refused
    body = json.loads(curl("-H", f"Authorization: Bearer {token}"))
    assert body in ({"predictions": [-1]}, {"predictions": [1]}), body
    ok("curl with the token")


def main():
    addr, ca, token = sys.argv[1:4]
    base = f"https://{addr}"
    tritonclient_checks(addr, ca, token)
    asyncio.run(kserve_sdk_checks(base, ca, token))
    curl_checks(base, ca, token)


if __name__ == "__main__":
    main()
