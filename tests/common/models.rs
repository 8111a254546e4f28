//! Both served models trained fast on the real binary, as the old platform named them:
//! `anomaly-detector` (5 features) and `predictive-analytics` (5 features, lookback 24,
//! horizon 12). Samples are remote-written in event time, one 10 s step at a time, so the
//! detector trains once it has `max_samples` vectors and the forecaster once it has its windows.
//! Small forests: these tests are about the protocol, not the models. No first training from a
//! source (`data_source = "none"`), so that "not ready until trained" is observable.

use std::time::Duration;

use super::{Agent, http, remote_write, wait_for};

pub const CONFIG: &str = r#"
[source]
data_source = "none"
[limits]
max_request_bytes = 65536
[evaluation]
step = "10s"
lateness = "0s"
[features]
cpu = 'avg(cpu)'
memory = 'avg(memory)'
disk = 'avg(disk)'
restarts = 'sum(restarts)'
net_rx = 'sum(net_rx)'
net_tx = 'sum(net_tx)'
[models.anomaly-detector]
kind = "isolation_forest"
features = ["cpu", "memory", "restarts", "net_rx", "net_tx"]
step = "10s"
max_samples = 32
n_estimators = 50
retrain_interval = "1h"
[models.predictive-analytics]
kind = "random_forest"
features = ["cpu", "memory", "disk", "net_rx", "net_tx"]
target = ["cpu"]
step = "10s"
lookback = 24
horizon = 12
n_estimators = 10
max_depth = 8
retrain_interval = "1h"
"#;

/// The body limit `CONFIG` sets (`limits.max_request_bytes`), which the KServe routes share.
pub const MAX_BODY_BYTES: usize = 65536;

const STEP_MS: i64 = 10_000;
const T0: i64 = 1_700_000_000_000;

/// One step's samples: a daily-like cycle compressed into 30 steps.
fn write_step(agent: &Agent, k: i64) {
    let phase = (k % 30) as f64 / 30.0 * std::f64::consts::TAU;
    let values = [
        ("cpu", 0.5 + 0.2 * phase.sin()),
        ("memory", 0.6 + 0.1 * phase.cos()),
        ("disk", 0.4 + 0.01 * (k % 7) as f64),
        ("restarts", (k % 3) as f64 * 0.01),
        ("net_rx", 100.0 + 20.0 * phase.sin()),
        ("net_tx", 80.0 + 15.0 * phase.cos()),
    ];
    let t = T0 + k * STEP_MS;
    let samples: Vec<(&str, i64, f64)> = values.iter().map(|&(name, v)| (name, t, v)).collect();
    remote_write(agent, &samples);
}

/// Streams 170 steps (enough for 32 detector vectors and 24 + 12 + 100 forecaster rows), each
/// chunk of 30 evaluated before the next is sent, and waits until both models are published.
pub fn train(agent: &Agent) {
    const STEPS: i64 = 170;
    for k in 0..STEPS {
        write_step(agent, k);
        if k % 30 == 0 || k == STEPS - 1 {
            wait_for(Duration::from_secs(20), "the chunk to be evaluated", || {
                agent
                    .metric("canopy_evaluation_steps_total")
                    .is_some_and(|v| v >= (k + 1) as f64)
                    .then_some(())
            });
        }
    }
    wait_for(Duration::from_secs(60), "both models ready", || {
        let r = http().get(agent.url("/v2/health/ready")).send().ok()?;
        (r.status() == 200).then_some(())
    });
}

/// A started agent with both models trained.
pub fn trained_agent() -> Agent {
    let agent = Agent::start(CONFIG);
    train(&agent);
    agent
}
