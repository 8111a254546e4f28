//! The synthetic training source: seeded, plausible feature histories with labelled anomalies,
//! so that an agent with no checkpoint and no Prometheus to backfill from serves a model at once.
//!
//! Each row is one model step; the series for the default features are, with `d` the daily
//! cycle (a cosine peaking at 14:00 UTC), `w` 1 on Saturdays and Sundays (UTC) else 0, `p` the
//! position in the training range (0 at its start, 1 at its end) and `N(σ)` Gaussian noise:
//!
//! | feature | series | range |
//! |---|---|---|
//! | `cpu` | 0.45 + 0.12 d − 0.08 w + 0.04 p + N(0.02) | busy fraction, clamped to 0..1 |
//! | `memory` | 0.58 + 0.05 d − 0.03 w + 0.05 p + N(0.01) | used fraction, clamped to 0..1 |
//! | `disk` | 0.42 + 0.10 p + 0.005 d + N(0.002) | used fraction, slowly filling, clamped to 0..1 |
//! | `restarts` | \|N(0.05)\| + 0.35 + 0.05 d | restarts per second, never negative |
//! | `net_rx` | 100 + 30 d − 15 w + 5 p + N(6) | never negative |
//! | `net_tx` | 0.8 net_rx (the same cycle and noise) + N(3) | never negative |
//!
//! The scales follow the replaced platform, whose documented example row
//! `[0.5, 0.6, 0.4, 100, 80]` (cpu, memory, restarts, net_rx, net_tx) is a normal one. A feature
//! that is not one of the defaults gets a generic cyclic series, 1 + 0.3 d − 0.1 w + N(0.05),
//! and only the generic anomalies below.
//!
//! Anomalies: exactly `round(anomaly_rate × rows)` rows, drawn without replacement, are
//! injected, each with one kind drawn uniformly:
//! - **spike**: cpu + 0.35..0.5 and memory + 0.2..0.3 (a runaway workload);
//! - **drop**: net_rx and net_tx × 0.05..0.2 and cpu × 0.3 (a node cut off);
//! - **restart burst**: restarts + 3..8 and cpu + 0.1..0.2 (a crash loop);
//! - **network spike**: net_rx and net_tx × 4..6.
//!
//! When a kind touches none of the model's features, one of its features, drawn at random, is
//! multiplied by 3..5 instead (the generic spike), so every injected row differs from its
//! neighbours. [`Synthetic::injected`] labels the injected rows, for tests and for measuring a
//! detector. Everything is drawn from [`Rng`] seeded with the model's seed: the same config
//! gives the same rows.

use crate::model::rng::Rng;

const DAY_MS: i64 = 86_400_000;

/// Generated rows at one model's step.
#[derive(Debug, Clone, PartialEq)]
pub struct Synthetic {
    pub(crate) n_features: usize,
    /// Row timestamps, oldest first, at multiples of the step.
    pub t: Vec<i64>,
    /// Row-major values, `n_features` per row.
    pub v: Vec<f64>,
    /// Per row: whether an anomaly was injected into it.
    pub injected: Vec<bool>,
}

impl Synthetic {
    pub fn rows(&self) -> usize {
        self.t.len()
    }

    pub fn row(&self, i: usize) -> &[f64] {
        &self.v[i * self.n_features..(i + 1) * self.n_features]
    }
}

/// What to generate: the model's features at its step, over `rows` steps ending at `end_ms`.
#[derive(Debug, Clone)]
pub struct SyntheticSpec<'a> {
    pub features: &'a [String],
    pub step_ms: i64,
    /// The newest row's timestamp (a multiple of `step_ms`).
    pub end_ms: i64,
    pub rows: usize,
    pub anomaly_rate: f64,
    pub seed: u64,
}

impl SyntheticSpec<'_> {
    /// The rows of `days` at `step_ms`.
    pub fn rows_for_days(days: u32, step_ms: i64) -> usize {
        (i64::from(days) * DAY_MS / step_ms.max(1)).max(1) as usize
    }
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Spike,
    Drop,
    RestartBurst,
    NetworkSpike,
}

/// Generates the rows `spec` describes.
pub fn generate(spec: &SyntheticSpec<'_>) -> Synthetic {
    let n = spec.rows;
    let nf = spec.features.len();
    let mut rng = Rng::new(spec.seed ^ 0x5e7d_a7a0_0000_0001);
    let start_ms = spec.end_ms - (n as i64 - 1) * spec.step_ms;
    let mut t = Vec::with_capacity(n);
    let mut v = Vec::with_capacity(n * nf);
    let span = ((n.max(2) - 1) as i64 * spec.step_ms) as f64;
    for i in 0..n {
        let ts = start_ms + i as i64 * spec.step_ms;
        t.push(ts);
        let p = (ts - start_ms) as f64 / span;
        let d = daily(ts);
        let w = weekend(ts);
        let shared_net = 30.0 * d - 15.0 * w + 5.0 * p + 6.0 * normal(&mut rng);
        for name in spec.features {
            let x = match name.as_str() {
                "cpu" => (0.45 + 0.12 * d - 0.08 * w + 0.04 * p + 0.02 * normal(&mut rng))
                    .clamp(0.0, 1.0),
                "memory" => (0.58 + 0.05 * d - 0.03 * w + 0.05 * p + 0.01 * normal(&mut rng))
                    .clamp(0.0, 1.0),
                "disk" => (0.42 + 0.10 * p + 0.005 * d + 0.002 * normal(&mut rng)).clamp(0.0, 1.0),
                "restarts" => (0.05 * normal(&mut rng)).abs() + 0.35 + 0.05 * d,
                "net_rx" => (100.0 + shared_net).max(0.0),
                "net_tx" => (0.8 * (100.0 + shared_net) + 3.0 * normal(&mut rng)).max(0.0),
                _ => 1.0 + 0.3 * d - 0.1 * w + 0.05 * normal(&mut rng),
            };
            v.push(x);
        }
    }
    let mut injected = vec![false; n];
    let k = ((spec.anomaly_rate * n as f64).round() as usize).min(n);
    let (mut scratch, mut chosen) = (Vec::new(), Vec::new());
    if k > 0 && nf > 0 {
        rng.sample_without_replacement(n, k, &mut scratch, &mut chosen);
    }
    for &row in &chosen {
        let row = row as usize;
        injected[row] = true;
        let kind = match rng.below(4) {
            0 => Kind::Spike,
            1 => Kind::Drop,
            2 => Kind::RestartBurst,
            _ => Kind::NetworkSpike,
        };
        let values = &mut v[row * nf..(row + 1) * nf];
        if !inject(kind, spec.features, values, &mut rng) {
            let f = rng.below(nf);
            values[f] *= rng.uniform(3.0, 5.0);
            if values[f] == 0.0 {
                values[f] = rng.uniform(3.0, 5.0);
            }
        }
    }
    Synthetic {
        n_features: nf,
        t,
        v,
        injected,
    }
}

/// Applies `kind` to the features it touches; false when it touches none of them.
fn inject(kind: Kind, features: &[String], values: &mut [f64], rng: &mut Rng) -> bool {
    let mut touched = false;
    for (name, x) in features.iter().zip(values.iter_mut()) {
        let changed = match (kind, name.as_str()) {
            (Kind::Spike, "cpu") => Some((*x + rng.uniform(0.35, 0.5)).min(1.0)),
            (Kind::Spike, "memory") => Some((*x + rng.uniform(0.2, 0.3)).min(1.0)),
            (Kind::Drop, "net_rx" | "net_tx") => Some(*x * rng.uniform(0.05, 0.2)),
            (Kind::Drop, "cpu") => Some(*x * 0.3),
            (Kind::RestartBurst, "restarts") => Some(*x + rng.uniform(3.0, 8.0)),
            (Kind::RestartBurst, "cpu") => Some((*x + rng.uniform(0.1, 0.2)).min(1.0)),
            (Kind::NetworkSpike, "net_rx" | "net_tx") => Some(*x * rng.uniform(4.0, 6.0)),
            _ => None,
        };
        if let Some(c) = changed {
            *x = c;
            touched = true;
        }
    }
    touched
}

/// The daily cycle at `t_ms`: a cosine peaking at 14:00 UTC, in -1..1.
fn daily(t_ms: i64) -> f64 {
    let hours = t_ms.rem_euclid(DAY_MS) as f64 / 3_600_000.0;
    ((hours - 14.0) / 24.0 * std::f64::consts::TAU).cos()
}

/// 1 on Saturdays and Sundays (UTC), else 0. 1970-01-01 was a Thursday.
fn weekend(t_ms: i64) -> f64 {
    let weekday = (t_ms.div_euclid(DAY_MS) + 3).rem_euclid(7); // 0 = Monday
    if weekday >= 5 { 1.0 } else { 0.0 }
}

/// A standard normal draw (Box-Muller).
fn normal(rng: &mut Rng) -> f64 {
    let u1 = 1.0 - rng.next_f64(); // (0, 1]: ln is finite
    let u2 = rng.next_f64();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    fn spec(features: &[String], rows: usize, rate: f64) -> SyntheticSpec<'_> {
        SyntheticSpec {
            features,
            step_ms: 60_000,
            end_ms: 1_700_000_040_000,
            rows,
            anomaly_rate: rate,
            seed: 42,
        }
    }

    #[test]
    fn injected_fraction_matches_the_rate_and_is_seeded() {
        let f = names(&["cpu", "memory", "restarts", "net_rx", "net_tx"]);
        let rows = SyntheticSpec::rows_for_days(7, 60_000);
        assert_eq!(rows, 10_080);
        let a = generate(&spec(&f, rows, 0.03));
        let injected = a.injected.iter().filter(|x| **x).count();
        // exactly round(rate × rows): within half a row of the rate
        assert_eq!(injected, 302);
        assert!((injected as f64 / rows as f64 - 0.03).abs() <= 0.5 / rows as f64);
        assert_eq!(a, generate(&spec(&f, rows, 0.03)), "same seed, same rows");
        assert_eq!(
            generate(&spec(&f, rows, 0.0))
                .injected
                .iter()
                .filter(|x| **x)
                .count(),
            0
        );
        assert!(a.v.iter().all(|x| x.is_finite() && *x >= 0.0));
        assert_eq!(a.t.last(), Some(&spec(&f, rows, 0.03).end_ms));
        assert!(a.t.windows(2).all(|w| w[1] - w[0] == 60_000));
    }

    #[test]
    fn normal_rows_stay_in_realistic_ranges_and_follow_the_day() {
        let f = names(&["cpu", "memory", "disk", "restarts", "net_rx", "net_tx"]);
        let s = generate(&spec(&f, 10_080, 0.0));
        for i in 0..s.rows() {
            let r = s.row(i);
            assert!((0.0..=1.0).contains(&r[0]) && (0.0..=1.0).contains(&r[1]));
            assert!((0.3..=0.6).contains(&r[2]), "disk {}", r[2]);
            assert!(r[3] < 1.0, "restarts {}", r[3]);
            assert!((20.0..=200.0).contains(&r[4]), "net_rx {}", r[4]);
        }
        // cpu is higher at 14:00 than at 02:00 on average
        let mean_at = |hour: i64| {
            let xs: Vec<f64> = (0..s.rows())
                .filter(|&i| s.t[i].rem_euclid(DAY_MS) / 3_600_000 == hour)
                .map(|i| s.row(i)[0])
                .collect();
            xs.iter().sum::<f64>() / xs.len() as f64
        };
        assert!(
            mean_at(14) > mean_at(2) + 0.15,
            "{} vs {}",
            mean_at(14),
            mean_at(2)
        );
    }

    #[test]
    fn unknown_features_get_a_cycle_and_generic_anomalies() {
        let f = names(&["queue_depth"]);
        let s = generate(&spec(&f, 2_000, 0.05));
        let (mut normal_max, mut injected_min) = (f64::MIN, f64::MAX);
        for i in 0..s.rows() {
            if s.injected[i] {
                injected_min = injected_min.min(s.row(i)[0]);
            } else {
                normal_max = normal_max.max(s.row(i)[0]);
            }
        }
        assert_eq!(s.injected.iter().filter(|x| **x).count(), 100);
        assert!(normal_max < 1.6, "{normal_max}");
        assert!(
            injected_min > 1.6,
            "every injected row is a generic spike: {injected_min}"
        );
    }
}
