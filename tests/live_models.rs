//! Both models live, end to end on the real binary: remote-written samples in event time become
//! feature vectors, the detector trains once it has `max_samples` vectors and scores every step,
//! the forecaster trains once it has enough windows and forecasts every step, and both export
//! their results and their own health on `/metrics`.

mod common;

use std::time::Duration;

use common::{Agent, metric_value, remote_write, wait_for};

// The stream runs event time from now to 25 minutes ahead, faster than the wall clock: samples
// that far ahead are allowed.
const CONFIG: &str = r#"
[limits]
max_future = "1h"
[evaluation]
step = "10s"
lateness = "0s"
[features]
load = 'avg(load)'
queue = 'sum(queue)'
[models.detector]
kind = "isolation_forest"
features = ["load", "queue"]
step = "10s"
max_samples = 32
n_estimators = 50
retrain_interval = "5m"
[models.forecaster]
kind = "random_forest"
features = ["load", "queue"]
target = ["load"]
step = "10s"
lookback = 4
horizon = 2
n_estimators = 10
retrain_interval = "5m"
"#;

fn write(agent: &Agent, t_ms: i64, load: f64, queue: f64) {
    remote_write(agent, &[("load", t_ms, load), ("queue", t_ms, queue)]);
}

#[test]
fn detector_and_forecaster_train_from_the_stream_and_export_results() {
    let agent = Agent::start(CONFIG);
    // Event time starts now: both models were first trained at start on synthetic rows ending
    // now, which stay in the detector's reservoir (a stream from far in the future would age them
    // all out at once, and the gate would keep the stream's vectors out until a level shift).
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .expect("clock");
    let t0 = now_ms - now_ms % 10_000 + 10_000;
    // A daily-like cycle compressed into 30 steps, sent one step at a time, 150 steps in all:
    // enough for the detector (32 vectors) and the forecaster (4 + 2 + 100 rows). Sent in chunks
    // of 30 steps (5 minutes of event time), each evaluated before the next is sent, as a live
    // stream would be: a burst of more event time than the retention would age out samples
    // before their steps were evaluated.
    for k in 0..150i64 {
        let phase = (k % 30) as f64 / 30.0 * std::f64::consts::TAU;
        write(
            &agent,
            t0 + k * 10_000,
            1.0 + phase.sin(),
            10.0 + 2.0 * phase.cos(),
        );
        if k % 30 == 0 || k == 149 {
            wait_for(Duration::from_secs(10), "the chunk to be evaluated", || {
                agent
                    .metric("canopy_evaluation_steps_total")
                    .is_some_and(|v| v >= (k + 1) as f64)
                    .then_some(())
            });
        }
    }
    // Both models are first trained from the synthetic source at start; their retrains every
    // 5 minutes of event time replace that with the stream's training.
    wait_for(
        Duration::from_secs(30),
        "both models trained from the stream",
        || {
            let m = agent.scrape();
            let d = metric_value(&m, r#"canopy_model_info{model="detector",source="live"}"#);
            let f = metric_value(
                &m,
                r#"canopy_model_retrains_total{model="forecaster",result="ok"}"#,
            );
            (d == Some(1.0) && f.is_some()).then_some(())
        },
    );
    // One more step after training, so both models have scored and forecast with a model.
    write(&agent, t0 + 150 * 10_000, 1.0, 12.0);
    write(&agent, t0 + 151 * 10_000, 1.2, 11.9);
    let m = wait_for(Duration::from_secs(30), "forecasts on /metrics", || {
        let m = agent.scrape();
        m.contains("canopy_forecast{").then_some(m)
    });
    let score = metric_value(&m, r#"canopy_anomaly_score{model="detector"}"#)
        .expect("anomaly score exported");
    assert!((0.0..=1.0).contains(&score), "score {score} in 0..1");
    let flag =
        metric_value(&m, r#"canopy_anomaly{model="detector"}"#).expect("anomaly flag exported");
    assert!(flag == 0.0 || flag == 1.0);
    assert!(
        metric_value(&m, r#"canopy_model_reservoir_size{model="detector"}"#)
            .is_some_and(|n| n >= 32.0)
    );
    assert_eq!(
        metric_value(&m, r#"canopy_model_info{model="detector",source="live"}"#),
        Some(1.0)
    );
    assert!(m.contains("canopy_model_retrain_duration_seconds_bucket{model=\"detector\""));
    for h in 1..=2 {
        let line =
            format!(r#"canopy_forecast{{model="forecaster",feature="load",steps_ahead="{h}"}}"#);
        let v = metric_value(&m, &line).unwrap_or_else(|| panic!("{line} missing"));
        assert!(
            (-0.5..=2.5).contains(&v),
            "forecast {v} outside the load's range"
        );
    }
}
