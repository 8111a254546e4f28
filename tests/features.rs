//! Features end to end on the real binary: unsupported expressions refused at load, the
//! features API, and event-time evaluation of remote-written samples against values computed by
//! hand.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{Agent, http, remote_write, wait_for};

fn check_config(toml: &str) -> (bool, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, toml).expect("write");
    let out = Command::new(env!("CARGO_BIN_EXE_canopy"))
        .args(["check-config", "--config"])
        .arg(&path)
        .output()
        .expect("run check-config");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

const MODEL: &str = "[models.m]\nkind = \"isolation_forest\"\nfeatures = [\"f\"]\n";

#[test]
fn unsupported_expressions_are_refused_at_load_naming_feature_and_construct() {
    for (expr, construct) in [
        ("histogram_count(x)", "histogram_count"),
        ("limitk(3, x)", "limitk"),
        ("max_over_time(x[1d:1s])", "subquery of 86401 steps"),
        ("x @ end()", "@ end()"),
    ] {
        let (ok, out) = check_config(&format!("[features]\nf = '{expr}'\n{MODEL}"));
        assert!(!ok, "`{expr}` must be refused");
        assert!(
            out.contains("`f`") && out.contains(construct),
            "`{expr}`: {out}"
        );
    }
    let (ok, out) = check_config(&format!("[features]\nf = 'rate(x[1h])'\n{MODEL}"));
    assert!(!ok && out.contains("retention"), "{out}");
    // a subquery's range counts towards the look-back
    let (ok, out) = check_config(&format!(
        "[features]\nf = 'max_over_time(rate(x[5m])[1h:1m])'\n{MODEL}"
    ));
    assert!(!ok && out.contains("retention"), "{out}");
    for expr in [
        "sum(rate(x[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
        "topk(3, x) > bool 1",
        "holt_winters(x[5m], 0.5, 0.5)",
    ] {
        let (ok, out) = check_config(&format!("[features]\nf = '{expr}'\n{MODEL}"));
        assert!(ok, "{out}");
        assert!(out.contains("configuration is valid"), "{out}");
    }
}

fn write(agent: &Agent, samples: &[(i64, f64)]) {
    let samples: Vec<(&str, i64, f64)> = samples
        .iter()
        .map(|&(t, v)| ("requests_total", t, v))
        .collect();
    remote_write(agent, &samples);
}

fn values(agent: &Agent, feature: &str) -> Vec<(f64, String)> {
    let v: serde_json::Value = http()
        .get(agent.url(&format!("/api/v1/features/{feature}")))
        .send()
        .expect("GET feature")
        .json()
        .expect("json");
    v["data"]["result"]
        .get(0)
        .and_then(|s| s["values"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|p| {
            (
                p[0].as_f64().expect("t"),
                p[1].as_str().expect("v").to_owned(),
            )
        })
        .collect()
}

#[test]
fn remote_written_samples_evaluate_in_event_time_each_step_once() {
    let agent = Agent::start(
        "[evaluation]\nstep = \"10s\"\nlateness = \"0s\"\n\
         [features]\nrate = 'rate(requests_total[30s])'\nlast = 'requests_total'\n\
         [models.m]\nkind = \"isolation_forest\"\nstep = \"10s\"\nfeatures = [\"rate\", \"last\"]\n",
    );
    // A counter growing by 10 every 10 s, reset to 0 at 1,000,060 s, in event time far in the
    // past: only sample timestamps move canopy's clock.
    let t0 = 1_000_000_000i64;
    let v = |k: i64| {
        if k < 6 {
            10.0 * k as f64
        } else {
            10.0 * (k - 6) as f64
        }
    };
    write(&agent, &[(t0, v(0))]);
    wait_for(Duration::from_secs(10), "the first step", || {
        (!values(&agent, "last").is_empty()).then_some(())
    });
    write(
        &agent,
        &(1..=9).map(|k| (t0 + k * 10_000, v(k))).collect::<Vec<_>>(),
    );
    wait_for(Duration::from_secs(10), "steps up to 1,000,090 s", || {
        (values(&agent, "last").last().map(|p| p.0) == Some(1_000_090.0)).then_some(())
    });
    let last = values(&agent, "last");
    let times: Vec<f64> = last.iter().map(|p| p.0).collect();
    assert_eq!(
        times,
        (0..=9)
            .map(|k| 1_000_000.0 + 10.0 * k as f64)
            .collect::<Vec<_>>(),
        "each step once"
    );
    assert_eq!(last[9].1, "30");

    // rate over [30s] at T = 1,000,090 s: samples at 60..90 s are 0, 10, 20, 30 (the reset is at
    // 60 s, the first sample of the window, so there is none inside it); result = 30 over a
    // sampled interval of 30 s; the window [60 s, 90 s] is covered exactly, so no extrapolation
    // beyond it: 30 / 30 = 1 per second.
    let rate = values(&agent, "rate");
    assert_eq!(
        rate.last().map(|p| (p.0, p.1.as_str())),
        Some((1_000_090.0, "1"))
    );
    // at T = 1,000,070 s: samples at 40, 50, 60, 70 s are 40, 50, 0, 10: one reset adds 50, so
    // the increase is 10 - 40 + 50 = 20, and the window [40 s, 70 s] is covered exactly:
    // 20 / 30 s = 0.6666…
    let at70 = rate
        .iter()
        .find(|p| p.0 == 1_000_070.0)
        .expect("step at 70 s");
    assert!(
        (at70.1.parse::<f64>().expect("float") - 20.0 / 30.0).abs() < 1e-12,
        "{at70:?}"
    );
    assert_eq!(agent.metric("canopy_evaluation_steps_total"), Some(10.0));
    assert_eq!(
        agent.metric(r#"canopy_feature_value{feature="last"}"#),
        Some(30.0)
    );
}

#[test]
fn features_api_lists_features_and_refuses_unknown_names() {
    let agent = Agent::start("");
    let v: serde_json::Value = http()
        .get(agent.url("/api/v1/features"))
        .send()
        .expect("GET")
        .json()
        .expect("json");
    let names: Vec<&str> = v["data"]
        .as_array()
        .expect("list")
        .iter()
        .map(|f| f["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        names,
        ["cpu", "disk", "memory", "net_rx", "net_tx", "restarts"]
    );
    let r = http()
        .get(agent.url("/api/v1/features/nope"))
        .send()
        .expect("GET");
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().expect("json");
    assert!(body["error"].as_str().expect("error").contains("nope"));
    let empty: serde_json::Value = http()
        .get(agent.url("/api/v1/features/cpu"))
        .send()
        .expect("GET")
        .json()
        .expect("json");
    assert_eq!(
        empty["data"]["result"],
        serde_json::json!([]),
        "nothing received, nothing evaluated"
    );
}
