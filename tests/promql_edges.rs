//! The edges of PromQL that come from Go's standard library rather than from Prometheus's own
//! code, checked against the real Prometheus 2.42 (`promtool test rules`): how
//! `histogram_quantile` parses a bucket's `le` (Go's `strconv.ParseFloat`: hexadecimal floats,
//! digit separators, overflow as an error) and what the date functions give for NaN, infinities
//! and times beyond Go's range (Go's `int64(v)` and its calendar).
//!
//! Each case is one promtool test group with its own input series, evaluated at time 0, whose
//! expected sample is deliberately wrong: promtool then prints the value it got, which must equal
//! canopy's evaluation of the same expression over the same samples, bit for bit.

use std::collections::HashMap;
use std::process::Command;

use canopy::promql::{Evaluator, Plan, PlanValue};
use canopy::series::{Sample, SeriesStore, StoreLimits};

struct Case {
    /// `(name, le, value)` bucket series, each with one sample at time 0.
    series: Vec<(String, String, f64)>,
    expr: String,
}

/// Bucket bounds as exporters could write them, valid and not, in Go's float grammar.
const LE: &[&str] = &[
    "0x1p1",
    "0X1P-1",
    "1_0",
    "1_000.5",
    "0x_1p0",
    "0x1",
    "0x10p0",
    "0x1.8p1",
    "0x.8p1",
    "1e1",
    "1E1",
    "+.5e1",
    "4e-1_0",
    "1e+1",
    "0x1p+1",
    "Infinity",
    "+inf",
    "inf",
    "nan",
    " 1",
    "1.",
    ".5",
    "1__0",
    "_1",
    "1_",
    "-1",
    "0.1e400",
    "1e-400",
    "0x1p-1074",
    "0x1p1024",
];

/// Unix seconds, as PromQL number literals, for the date functions.
const TIMES: &[&str] = &[
    "NaN",
    "Inf",
    "-Inf",
    "1e19",
    "-1e19",
    "9.3e18",
    "9.2e18",
    "-9.2e18",
    "1e17",
    "-1e17",
    "-62135596801",
    "253402300800",
    "1709214300",
    "-1",
    "-0.5",
    "0.5",
    "951782400",
];

const DATE_FUNCTIONS: &[&str] = &[
    "minute",
    "hour",
    "day_of_week",
    "day_of_month",
    "day_of_year",
    "days_in_month",
    "month",
    "year",
];

fn cases() -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, le) in LE.iter().enumerate() {
        // A bucket at `le` holding 10 of 20 observations: the 0.25 quantile is half its bound
        // where Go reads the bound, and NaN (one bucket left) where it does not.
        let name = format!("h{i}_bucket");
        let bucket = |le: &str, v| (name.clone(), le.to_owned(), v);
        cases.push(Case {
            series: vec![bucket(le, 10.0), bucket("+Inf", 20.0)],
            expr: format!("histogram_quantile(0.25, {name})"),
        });
    }
    for f in DATE_FUNCTIONS {
        for t in TIMES {
            cases.push(Case {
                series: Vec::new(),
                expr: format!("{f}(vector({t}))"),
            });
        }
    }
    cases
}

/// The promtool test file: one group per case, each expecting an impossible value.
fn promtool_tests(cases: &[Case]) -> String {
    let mut out = String::from("rule_files: []\nevaluation_interval: 1m\ntests:\n");
    for c in cases {
        out.push_str("- interval: 1m\n  input_series:\n");
        for (name, le, v) in &c.series {
            out.push_str(&format!(
                "  - series: \"{name}{{le=\\\"{le}\\\"}}\"\n    values: '{v}'\n"
            ));
        }
        if c.series.is_empty() {
            out.push_str("  - series: 'unused'\n    values: '0'\n");
        }
        out.push_str(&format!(
            "  promql_expr_test:\n  - expr: '{}'\n    eval_time: 0m\n    exp_samples: [{{labels: '{{}}', value: -12345}}]\n",
            c.expr
        ));
    }
    out
}

/// What promtool got for each expression: `expr: "…", time: 0s,` then `got: {} <value>`.
fn promtool_answers(output: &str) -> HashMap<String, f64> {
    let mut answers = HashMap::new();
    let mut expr = None;
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("expr: \"") {
            expr = rest.split_once("\", time:").map(|(e, _)| e.to_owned());
        } else if let Some(rest) = line.strip_prefix("got: {} ") {
            let value = match rest {
                "NaN" => f64::NAN,
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().unwrap_or_else(|_| panic!("promtool value {v:?}")),
            };
            answers.insert(expr.take().expect("an expr before its value"), value);
        }
    }
    answers
}

fn canopy_answer(case: &Case) -> f64 {
    let store = SeriesStore::new(StoreLimits {
        max_series: 100,
        retention_ms: 3_600_000,
    });
    for (name, le, v) in &case.series {
        let pairs = [("__name__", name.as_str()), ("le", le.as_str())];
        store.append(&pairs, &[Sample { t: 0, v: *v }]);
    }
    let plan = Plan::parse(&case.expr).unwrap_or_else(|e| panic!("{}: {e}", case.expr));
    match Evaluator::new().eval(&store, &plan, 0) {
        Ok(PlanValue::Vector(v)) if v.len() == 1 => v[0].1,
        other => panic!("{}: expected one sample, got {other:?}", case.expr),
    }
}

#[test]
fn le_parsing_and_date_functions_equal_prometheus_at_their_edges() {
    let cases = cases();
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("edges_test.yml");
    std::fs::write(&file, promtool_tests(&cases)).expect("write the test file");
    let out = Command::new("promtool")
        .args(["test", "rules"])
        .arg(&file)
        .output()
        .expect("promtool runs (Debian's prometheus package)");
    let output =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let answers = promtool_answers(&output);
    assert_eq!(
        answers.len(),
        cases.len(),
        "promtool answered {} of {} cases:\n{output}",
        answers.len(),
        cases.len()
    );
    let mut wrong = Vec::new();
    for case in &cases {
        let want = answers[&case.expr];
        let got = canopy_answer(case);
        if !(got.to_bits() == want.to_bits() || got.is_nan() && want.is_nan()) {
            wrong.push(format!(
                "{}: canopy {got:e}, Prometheus {want:e}",
                case.expr
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    // the cases reach both sides of every edge: bounds read and refused, dates past Go's range
    let read = LE
        .iter()
        .enumerate()
        .filter(|(i, _)| !answers[&format!("histogram_quantile(0.25, h{i}_bucket)")].is_nan())
        .count();
    assert!(
        read > 10 && read < LE.len() - 10,
        "{read} of {} read",
        LE.len()
    );
    assert_ne!(answers["year(vector(NaN))"], 1970.0);
}
