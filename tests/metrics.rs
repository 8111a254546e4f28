//! canopy's own `/metrics` on the real binary: every family canopy exports (`canopy_*`, and the
//! `request_*_seconds` histograms named as KServe's model server names them) carries a `# HELP`
//! and a `# TYPE` line, checked by parsing the text exposition after ingest, evaluation, training,
//! predict and explain have all recorded.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::http;
use common::models::trained_agent;

/// The families of a text exposition: each sample's family name (a histogram's or summary's
/// `_bucket`, `_sum` and `_count` samples belong to the family their `# TYPE` names), and each
/// family's `# HELP` and `# TYPE`.
struct Exposition {
    samples: BTreeSet<String>,
    help: BTreeMap<String, String>,
    types: BTreeMap<String, String>,
}

fn parse(body: &str) -> Exposition {
    let mut e = Exposition {
        samples: BTreeSet::new(),
        help: BTreeMap::new(),
        types: BTreeMap::new(),
    };
    let mut names = Vec::new();
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest.split_once(' ').unwrap_or((rest, ""));
            assert!(
                e.help.insert(name.into(), text.into()).is_none(),
                "two HELP lines for {name}"
            );
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').expect("TYPE NAME KIND");
            assert!(
                e.types.insert(name.into(), kind.into()).is_none(),
                "two TYPE lines for {name}"
            );
        } else if line.starts_with('#') {
            continue;
        } else {
            let end = line
                .find(['{', ' '])
                .expect("a sample line: NAME[{LABELS}] VALUE");
            names.push(line[..end].to_owned());
        }
    }
    for name in names {
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                let base = name.strip_suffix(suffix)?;
                matches!(
                    e.types.get(base).map(String::as_str),
                    Some("histogram" | "summary")
                )
                .then(|| base.to_owned())
            })
            .unwrap_or(name);
        e.samples.insert(family);
    }
    e
}

#[test]
fn every_canopy_family_has_help_and_type() {
    let agent = trained_agent();
    // the KServe histograms record on requests
    for path in [
        "/v1/models/anomaly-detector:predict",
        "/v1/models/anomaly-detector:explain",
    ] {
        let status = http()
            .post(agent.url(path))
            .header("Content-Type", "application/json")
            .body(r#"{"instances": [[0.5, 0.6, 0.01, 100, 80]]}"#)
            .send()
            .expect("POST")
            .status();
        assert_eq!(status, 200, "{path}");
    }

    let e = parse(&agent.scrape());
    let ours: Vec<&String> = e
        .samples
        .iter()
        .filter(|f| f.starts_with("canopy_") || f.starts_with("request_"))
        .collect();
    // what the run recorded, so the check below is not over an empty list
    for family in [
        "canopy_remote_write_requests_total",
        "canopy_samples_received_total",
        "canopy_active_series",
        "canopy_feature_value",
        "canopy_evaluation_steps_total",
        "canopy_evaluation_seconds",
        "canopy_anomaly_score",
        "canopy_anomaly_likelihood",
        "canopy_forecast",
        "canopy_model_retrains_total",
        "canopy_model_retrain_duration_seconds",
        "canopy_model_info",
        "request_predict_seconds",
        "request_explain_seconds",
    ] {
        assert!(
            e.samples.contains(family),
            "{family} not exported: {:?}",
            e.samples
        );
    }
    let mut lacking = Vec::new();
    for family in &ours {
        match (e.help.get(*family), e.types.get(*family)) {
            (Some(help), Some(_)) if !help.trim().is_empty() => {}
            (help, kind) => lacking.push(format!("{family}: HELP {help:?}, TYPE {kind:?}")),
        }
    }
    assert!(
        lacking.is_empty(),
        "families without HELP or TYPE:\n{}",
        lacking.join("\n")
    );
    assert_eq!(
        e.types["canopy_model_retrain_duration_seconds"], "histogram",
        "histograms are rendered with buckets"
    );
    assert_eq!(e.types["canopy_samples_received_total"], "counter");
    assert_eq!(e.types["canopy_anomaly_likelihood"], "gauge");
    eprintln!("{} canopy families, all with HELP and TYPE", ours.len());
}
