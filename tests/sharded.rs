//! The sharded topology (`deploy/overlays/sharded`) run as shipped. The real Prometheus 2.42
//! remote-writes with the overlay's own `remote_write` entries (`prometheus-remote-write.yaml`,
//! only their urls pointed at this test's agents) to two agents running the overlay's features,
//! and with the single-agent snippet (`deploy/prometheus/remote-write.yaml`) to a third agent that
//! receives every node. Prometheus's `hashmod` relabelling must give the two shards disjoint sets
//! of nodes, and together they must export exactly the per-node features and anomaly scores that
//! the single agent exports.
//!
//! The nodes: this machine's node-exporter, scraped as four targets labelled `node="node-a"` to
//! `node="node-d"`, as Kubernetes service discovery labels four nodes' exporters; their values
//! differ only by scrape time, and the hash puts two nodes on each shard. A second node-exporter,
//! serving only a textfile with a `kube_pod_container_status_restarts_total` counter, stands in
//! for kube-state-metrics: its series carry no `node`, reach every shard, and make the
//! cluster-wide `restarts` feature move.
//!
//! Scores are comparable only between equal forests, and a shard's detector learns from its own
//! nodes. So every agent starts from one checkpoint, a forest that a first agent trained on this
//! stream, and none retrains during the test (`retrain_interval` is an hour of event time).
//!
//! To compare a final state, the stream stops (Prometheus exits, flushing its queues), and every
//! agent is sent one sample of a series that enters no feature's result, stamped so that each
//! agent's watermark lands on the same step: each then evaluates up to that step and no further.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{Agent, Peer, free_port, http, metric_value, wait_for};

const NODES: [&str; 4] = ["node-a", "node-b", "node-c", "node-d"];
const DETECTOR: &str = "anomaly-detector";
/// The test config's `evaluation.lateness`: samples of a step may arrive this late (Prometheus
/// sends a batch at least every 5 s, the overlay's `batch_send_deadline`).
const LATENESS_MS: i64 = 10_000;
/// The per-entity families of `/metrics`.
const ENTITY_FAMILIES: [&str; 5] = [
    "canopy_feature_value",
    "canopy_anomaly_score",
    "canopy_anomaly_likelihood",
    "canopy_anomaly",
    "canopy_anomalies_total",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The overlay's `canopy.toml`, its features unchanged, timed for a test: 1 s steps; the
/// detector alone (a forecast needs hours of history), fit first on 32 vectors and not retrained
/// within the test.
fn test_config() -> String {
    let mut config: toml::Table = read("deploy/overlays/sharded/canopy.toml")
        .parse()
        .expect("the overlay's canopy.toml");
    let evaluation = config
        .get_mut("evaluation")
        .and_then(toml::Value::as_table_mut)
        .expect("[evaluation]");
    evaluation.insert("step".into(), "1s".into());
    evaluation.insert("lateness".into(), format!("{}ms", LATENESS_MS).into());
    let models = config
        .get_mut("models")
        .and_then(toml::Value::as_table_mut)
        .expect("[models]");
    models.remove("predictive-analytics");
    let detector = models
        .get_mut(DETECTOR)
        .and_then(toml::Value::as_table_mut)
        .expect("[models.anomaly-detector]");
    detector.insert("step".into(), "1s".into());
    detector.insert("max_samples".into(), 32.into());
    detector.insert("retrain_interval".into(), "1h".into());
    toml::to_string(&config).expect("config as TOML")
}

/// Prometheus's scrape configs: the node-exporter as four nodes, and the kube-state-metrics
/// stand-in without a `node` label.
fn scrape_configs(node: &Peer, ksm: &Peer) -> String {
    let mut s = String::from("  - job_name: node\n    static_configs:\n");
    for n in NODES {
        s += &format!(
            "      - targets: ['127.0.0.1:{}']\n        labels:\n          node: {n}\n",
            node.port
        );
    }
    s + &format!(
        "  - job_name: kube-state-metrics\n    static_configs:\n      - targets: ['127.0.0.1:{}']\n",
        ksm.port
    )
}

fn prometheus(scrape: &str, remote_write: &str) -> Peer {
    let yml = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{scrape}{remote_write}"
    );
    Peer::prometheus_with_config(free_port(), &yml, &[])
}

/// Sets the stand-in's restart counter (written whole, then renamed, as node-exporter expects).
fn set_restarts(ksm: &Peer, value: u32) {
    let text = format!(
        "# TYPE kube_pod_container_status_restarts_total counter\n\
         kube_pod_container_status_restarts_total{{namespace=\"shop\",pod=\"web-0\",container=\"web\"}} {value}\n"
    );
    let tmp = ksm.dir.path().join("ksm.prom.tmp");
    std::fs::write(&tmp, text).expect("write textfile");
    std::fs::rename(&tmp, ksm.dir.path().join("ksm.prom")).expect("rename textfile");
}

/// The value of the `/metrics` line of `name` whose labels include every pair of `labels`.
fn metric(agent: &Agent, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    agent.scrape().lines().find_map(|l| {
        let rest = l.strip_prefix(name)?.strip_prefix('{')?;
        let (set, value) = rest.split_once("} ")?;
        labels
            .iter()
            .all(|(k, v)| set.split(',').any(|p| p == format!("{k}=\"{v}\"")))
            .then(|| value.trim().parse().ok())?
    })
}

/// The per-entity lines of `/metrics`, exactly as exported.
fn entity_lines(agent: &Agent) -> BTreeSet<String> {
    agent
        .scrape()
        .lines()
        .filter(|l| {
            ENTITY_FAMILIES
                .iter()
                .any(|f| l.starts_with(&format!("{f}{{")))
        })
        .map(str::to_owned)
        .collect()
}

fn get_json(url: &str) -> serde_json::Value {
    http()
        .get(url)
        .send()
        .and_then(|r| r.json())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// A feature's retained history: label set (as JSON text) → its `[t, "v"]` pairs.
fn history(agent: &Agent, feature: &str) -> BTreeMap<String, Vec<serde_json::Value>> {
    let v = get_json(&agent.url(&format!("/api/v1/features/{feature}")));
    v["data"]["result"]
        .as_array()
        .unwrap_or_else(|| panic!("{feature}: {v}"))
        .iter()
        .map(|r| {
            let values = r["values"].as_array().cloned().unwrap_or_default();
            (r["metric"].to_string(), values)
        })
        .collect()
}

/// The `node` values of the series an agent holds (apart from the `clock` series), after
/// checking that no series kept Prometheus's `__tmp_hash`; and how many series carry a node.
fn held_nodes(agent: &Agent, names: &[&str]) -> (BTreeSet<String>, usize) {
    let query: Vec<(&str, &str)> = names.iter().map(|n| ("match[]", *n)).collect();
    let v: serde_json::Value = http()
        .get(agent.url("/api/v1/series"))
        .query(&query)
        .send()
        .and_then(|r| r.json())
        .expect("/api/v1/series");
    let series = v["data"].as_array().expect("series list");
    let mut nodes = BTreeSet::new();
    let mut count = 0;
    for s in series {
        assert!(
            s.get("__tmp_hash").is_none(),
            "Prometheus's __tmp_hash reached canopy: {s}"
        );
        if let Some(n) = s["node"].as_str().filter(|n| *n != "clock") {
            nodes.insert(n.to_owned());
            count += 1;
        }
    }
    (nodes, count)
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// One sample of `node_memory_MemTotal_bytes{node="clock"}` at `t_ms`: canopy keeps it (a
/// feature selects the metric), so it moves the watermark, but with no `MemAvailable` to divide
/// it enters no feature's result.
fn write_clock(agent: &Agent, t_ms: i64) {
    use canopy::ingest::proto::v1;
    let label = |name: &str, value: &str| v1::Label {
        name: name.into(),
        value: value.into(),
    };
    common::post_series(
        agent,
        vec![v1::TimeSeries {
            labels: vec![
                label("__name__", "node_memory_MemTotal_bytes"),
                label("node", "clock"),
            ],
            samples: vec![v1::Sample {
                value: 1.0,
                timestamp: t_ms,
            }],
            ..Default::default()
        }],
    );
}

/// A model folder holding a copy of `ckpt` as the detector's checkpoint.
fn model_dir_with(ckpt: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join(DETECTOR)).expect("model folder");
    std::fs::copy(ckpt, dir.path().join(DETECTOR).join("model.ckpt")).expect("copy checkpoint");
    dir
}

#[test]
fn two_shards_hold_disjoint_nodes_and_export_what_one_agent_exports() {
    let started = Instant::now();
    let config = test_config();
    let env = [("DATA_SOURCE", "none")];
    let node = Peer::node_exporter();
    let ksm = Peer::node_exporter_with(&[
        "--collector.disable-defaults",
        "--collector.textfile",
        "--collector.textfile.directory={dir}",
    ]);
    set_restarts(&ksm, 0);
    let scrape = scrape_configs(&node, &ksm);

    // The forest every agent starts from: trained by a first agent on this stream, live.
    let trained = tempfile::tempdir().expect("temp dir");
    let mut trainer = Agent::start_with_models_env(&config, trained.path(), &env);
    let mut prom = prometheus(
        &scrape,
        &format!(
            "remote_write:\n  - url: {}\n    queue_config:\n      batch_send_deadline: 1s\n",
            trainer.url("/api/v1/write")
        ),
    );
    wait_for(
        Duration::from_secs(120),
        "the first agent's forest trained on the stream",
        || {
            let warm = metric(&trainer, "canopy_model_warming_up", &[("model", DETECTOR)]);
            let live = metric(
                &trainer,
                "canopy_model_info",
                &[("model", DETECTOR), ("source", "live")],
            );
            (warm == Some(0.0) && live == Some(1.0)).then_some(())
        },
    );
    // Prometheus first: it flushes its queue to the agent on the way out.
    assert!(prom.terminate(), "the first Prometheus exits cleanly");
    assert!(trainer.terminate(), "the first agent exits cleanly");
    let ckpt = trained.path().join(DETECTOR).join("model.ckpt");
    assert!(ckpt.is_file(), "no checkpoint at {}", ckpt.display());
    eprintln!(
        "forest trained on the stream after {:.0} s",
        started.elapsed().as_secs_f64()
    );

    // Three agents from that checkpoint: the two shards and the single agent.
    let dirs: Vec<_> = (0..3).map(|_| model_dir_with(&ckpt)).collect();
    let agents: Vec<Agent> = dirs
        .iter()
        .map(|d| Agent::start_with_models_env(&config, d.path(), &env))
        .collect();
    let [single, shards @ ..] = agents.as_slice() else {
        unreachable!()
    };
    for a in &agents {
        wait_for(
            Duration::from_secs(30),
            "every agent restores the same forest",
            || {
                let restored = metric(
                    a,
                    "canopy_checkpoint_restores_total",
                    &[("model", DETECTOR), ("result", "ok")],
                );
                (restored == Some(1.0)).then_some(())
            },
        );
    }

    // Prometheus writes with the overlay's entries, urls pointed at the shards, and with the
    // single-agent snippet's entry to the single agent.
    let mut remote_write = read("deploy/overlays/sharded/prometheus-remote-write.yaml");
    for (k, shard) in shards.iter().enumerate() {
        let url = format!("http://canopy-{k}.canopy.self-healing-platform.svc:8080/api/v1/write");
        assert!(remote_write.contains(&url), "the overlay writes to {url}");
        remote_write = remote_write.replace(&url, &shard.url("/api/v1/write"));
    }
    let snippet = read("deploy/prometheus/remote-write.yaml");
    let (_, entry) = snippet
        .split_once("remote_write:\n")
        .expect("the snippet's remote_write");
    remote_write += &entry.replace(
        "http://canopy.self-healing-platform.svc:8080/api/v1/write",
        &single.url("/api/v1/write"),
    );
    let mut prom = prometheus(&scrape, &remote_write);

    // Each agent scores its nodes; the restart counter moves meanwhile.
    wait_for(Duration::from_secs(120), "scores for every node", || {
        let scored = |a: &Agent| {
            NODES
                .iter()
                .filter(|n| {
                    metric(
                        a,
                        "canopy_anomaly_score",
                        &[("model", DETECTOR), ("node", n)],
                    )
                    .is_some()
                })
                .count()
        };
        (scored(single) == NODES.len() && shards.iter().map(scored).sum::<usize>() == NODES.len())
            .then_some(())
    });
    for a in &agents {
        assert_eq!(
            metric(a, "canopy_model_warming_up", &[("model", DETECTOR)]),
            Some(0.0),
            "a forest trained live needs no warm-up after a restore"
        );
    }
    set_restarts(&ksm, 3);
    std::thread::sleep(Duration::from_secs(10));
    set_restarts(&ksm, 7);
    std::thread::sleep(Duration::from_secs(15));

    // Stop the stream, then give every agent the same watermark: the step `last`, a few seconds
    // before the stop, whose samples every queue had sent long before.
    let t_stop = now_ms();
    let last = (t_stop - 3_000).div_euclid(1_000) * 1_000;
    assert!(prom.terminate(), "Prometheus exits cleanly");
    for a in &agents {
        write_clock(a, last + LATENESS_MS);
    }
    for a in &agents {
        wait_for(Duration::from_secs(30), "the last step evaluated", || {
            let step = metric_value(&a.scrape(), "canopy_evaluation_last_step_timestamp_seconds");
            (step == Some(last as f64 / 1000.0)).then_some(())
        });
    }

    // The series: each node on exactly one shard, all of its series there; the series without a
    // node on every shard; no relabelling label left over.
    let names = [
        "node_cpu_seconds_total",
        "node_memory_MemAvailable_bytes",
        "node_memory_MemTotal_bytes",
        "node_filesystem_avail_bytes",
        "node_filesystem_size_bytes",
        "node_network_receive_bytes_total",
        "node_network_transmit_bytes_total",
    ];
    let (all, all_count) = held_nodes(single, &names);
    let held: Vec<_> = shards.iter().map(|s| held_nodes(s, &names)).collect();
    let expected: BTreeSet<String> = NODES.iter().map(|n| n.to_string()).collect();
    assert_eq!(all, expected, "the single agent holds every node");
    assert!(
        held.iter().all(|(n, _)| !n.is_empty()),
        "each shard holds a node: {held:?}"
    );
    assert!(
        held[0].0.is_disjoint(&held[1].0),
        "no node on both shards: {held:?}"
    );
    assert_eq!(
        &held[0].0 | &held[1].0,
        all,
        "the shards hold every node between them"
    );
    assert_eq!(
        held[0].1 + held[1].1,
        all_count,
        "every series of a node on its shard, none twice"
    );
    for a in &agents {
        let v = get_json(&format!(
            "{}?match[]=kube_pod_container_status_restarts_total",
            a.url("/api/v1/series")
        ));
        assert_eq!(
            v["data"].as_array().map(Vec::len),
            Some(1),
            "the series without a node reaches every agent: {v}"
        );
    }

    // Every feature's history, step by step: each node's values on its shard are the single
    // agent's exactly, over every step both evaluated (up to the last one); the cluster-wide
    // `restarts` on both shards.
    let features: toml::Table = config.parse::<toml::Table>().expect("config")["features"]
        .as_table()
        .expect("[features]")
        .clone();
    for feature in features.keys() {
        let want = history(single, feature);
        let have: Vec<_> = shards.iter().map(|s| history(s, feature)).collect();
        assert!(
            !want.is_empty(),
            "{feature}: no history on the single agent"
        );
        for (labels, values) in &want {
            let owners: Vec<usize> = (0..2).filter(|&k| have[k].contains_key(labels)).collect();
            let expected_owners = if labels == "{}" { 2 } else { 1 };
            assert_eq!(
                owners.len(),
                expected_owners,
                "{feature} {labels}: on shards {owners:?}"
            );
            for k in owners {
                let theirs: BTreeMap<String, &serde_json::Value> = have[k][labels]
                    .iter()
                    .map(|p| (p[0].to_string(), &p[1]))
                    .collect();
                let common: Vec<_> = values
                    .iter()
                    .filter(|p| theirs.contains_key(&p[0].to_string()))
                    .collect();
                assert!(
                    common.len() >= 20,
                    "{feature} {labels}: only {} steps in common with shard {k}",
                    common.len()
                );
                assert_eq!(
                    common.last().map(|p| p[0].as_f64()),
                    Some(Some(last as f64 / 1000.0)),
                    "{feature} {labels}: the last step is compared"
                );
                for p in common {
                    assert_eq!(
                        &p[1],
                        theirs[&p[0].to_string()],
                        "{feature} {labels} at {}: single agent vs shard {k}",
                        p[0]
                    );
                }
            }
        }
        for (k, h) in have.iter().enumerate() {
            for labels in h.keys() {
                assert!(
                    want.contains_key(labels),
                    "{feature}: shard {k} has {labels}, the single agent not"
                );
            }
        }
    }
    let restarts = metric(single, "canopy_feature_value", &[("feature", "restarts")]);
    assert!(
        restarts.is_some_and(|r| r > 0.0),
        "the restart counter moved the cluster-wide feature: {restarts:?}"
    );

    // The exported per-node lines at the last step: the single agent's are exactly the shards'
    // together (each node's on one shard), and the cluster-wide ones are on each.
    let want = entity_lines(single);
    let have: Vec<_> = shards.iter().map(entity_lines).collect();
    let per_node = |lines: &BTreeSet<String>| -> BTreeSet<String> {
        lines
            .iter()
            .filter(|l| l.contains("node=\""))
            .cloned()
            .collect()
    };
    let cluster_wide = |lines: &BTreeSet<String>| -> BTreeSet<String> {
        lines
            .iter()
            .filter(|l| !l.contains("node=\""))
            .cloned()
            .collect()
    };
    for n in NODES {
        assert!(
            want.iter()
                .any(|l| l.starts_with("canopy_anomaly_score{")
                    && l.contains(&format!("node=\"{n}\""))),
            "{n} is scored"
        );
    }
    assert!(
        per_node(&have[0]).is_disjoint(&per_node(&have[1])),
        "no node exported by both shards"
    );
    assert_eq!(
        per_node(&want),
        &per_node(&have[0]) | &per_node(&have[1]),
        "per-node features and scores: the single agent's against the shards' together"
    );
    for (k, h) in have.iter().enumerate() {
        assert_eq!(
            cluster_wide(h),
            cluster_wide(&want),
            "shard {k}'s cluster-wide lines"
        );
    }
    eprintln!(
        "{} per-node lines compared; test took {:.0} s",
        per_node(&want).len(),
        started.elapsed().as_secs_f64()
    );
}
