//! Real KServe clients against the real binary: tritonclient (binary and JSON mode), the kserve
//! SDK's `InferenceRESTClient` (v1 and v2) and the old platform's curl call, run by
//! `tests/python/kserve_clients.py` from the pinned venv. Python is found through
//! `CANOPY_PYTHON`, else `.venv/bin/python` in the crate; without it the test fails.

mod common;

use common::python;

use std::path::Path;
use std::process::Command;

use common::models::trained_agent;

#[test]
fn tritonclient_kserve_sdk_and_the_old_curl_call_work_unchanged() {
    let python = python();
    let agent = trained_agent();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/kserve_clients.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(agent.addr.to_string())
        .output()
        .expect("run kserve_clients.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "kserve_clients.py failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for check in [
        "ok triton health",
        "ok triton metadata",
        "ok triton binary detector",
        "ok triton binary forecaster",
        "ok triton json detector",
        "ok triton json forecaster",
        "ok triton unknown output",
        "ok kserve v1",
        "ok kserve v2 json",
        "ok kserve v2 binary",
        "ok curl",
    ] {
        assert!(
            stdout.lines().any(|l| l == check),
            "{check} missing:\n{stdout}"
        );
    }
    let results: serde_json::Value = stdout
        .lines()
        .last()
        .and_then(|l| serde_json::from_str(l).ok())
        .expect("results line");
    // Binary and JSON transport give the same scores.
    assert_eq!(results["triton_binary_score"], results["triton_json_score"]);
    assert_eq!(
        results["triton_binary_forecast"],
        results["triton_json_forecast"]
    );
}
