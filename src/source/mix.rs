//! The rows each model is first trained from, by `[source] data_source` ([`TrainingSource`]).
//! Returns rows only: the live runtimes seed themselves from them (`live::seed`).
//!
//! - `synthetic` (the default): every model is fitted on [`synthetic`](super::synthetic) rows
//!   over its training days at its step.
//! - `prometheus`: each model's features are backfilled from Prometheus with `query_range`
//!   ([`prometheus`](super::prometheus)), and synthetic rows make up 20% of the training set.
//! - `hybrid`: the same, with synthetic rows making up 50%.
//!
//! How rows are mixed. The detector's reservoir gets `total = min(reservoir_size,
//! backfilled / (1 − share))` vectors: `share × total` synthetic ones and the rest backfilled,
//! each picked evenly over the training days so the daily and weekly cycles stay represented.
//! The forecaster needs unbroken time series, so its synthetic rows are one more entity
//! (labelled `canopy_source="synthetic"`), the newest `share / (1 − share)` × the backfilled row
//! count of a synthetic series (at most one entity's `training_days`, and at most
//! [`MAX_FORECASTER_SYNTHETIC_ROWS`]), beside the backfilled
//! entities. With `synthetic` alone, that entity is all the forecaster holds (its newest
//! [`MAX_FORECASTER_SYNTHETIC_ROWS`] rows). No forecast is ever
//! made for it: on the first live step it gets a gap row, as every entity absent from a step
//! does.
//!
//! An unreachable or erroring Prometheus (or one that has no complete vector for a model's
//! features) makes that model, and every later one, fall back to synthetic alone, with a warning
//! naming the URL and the error. `canopy_model_info{model, source}` records what each model was
//! fitted from. Live data then takes over through the detector's and forecaster's incremental
//! retraining: the first retrain comes one `retrain_interval` of event time after the start, and
//! the seeded rows leave the reservoir and histories as live ones push them out.
//!
//! Asked on the evaluation thread before its first step (blocking HTTP; never on an async
//! worker), so the server already answers while models train, and readiness follows the
//! published forests. A checkpoint restored before wins: models that already have a forest are
//! not asked for.

use super::prometheus::{Backfill, BackfillRequest, ClientOptions, PrometheusClient, backfill};
use super::synthetic::{Synthetic, SyntheticSpec, generate};
use crate::config::{Config, DataSource, ModelConfig};
use crate::series::Labels;

/// The most synthetic rows a forecaster is seeded with: the default model's 30 days at 5m. A finer
/// step would otherwise make the first fit take minutes (30 days at 10s is 259,200 rows).
pub(crate) const MAX_FORECASTER_SYNTHETIC_ROWS: usize = 8_640;

/// The share of synthetic rows in a training set, by data source.
pub(crate) fn synthetic_share(source: DataSource) -> f64 {
    match source {
        DataSource::Synthetic => 1.0,
        DataSource::Prometheus => 0.2,
        DataSource::Hybrid => 0.5,
        DataSource::None => 0.0,
    }
}

fn source_name(source: DataSource) -> &'static str {
    match source {
        DataSource::Synthetic => "synthetic",
        DataSource::Prometheus => "prometheus",
        DataSource::Hybrid => "hybrid",
        DataSource::None => "live",
    }
}

/// The label set of the forecaster's synthetic entity.
pub(crate) fn synthetic_entity() -> Labels {
    Labels::from_pairs([(crate::features::entities::PRIOR_LABEL, "synthetic")])
}

/// One model's training range: `rows` steps ending at `end_ms`.
#[derive(Debug, Clone, Copy)]
struct Range {
    step_ms: i64,
    end_ms: i64,
    rows: usize,
}

impl Range {
    fn new(model: &ModelConfig, now_ms: i64) -> Range {
        let step_ms = model.step.as_millis().max(1) as i64;
        Range {
            step_ms,
            end_ms: now_ms - now_ms.rem_euclid(step_ms),
            rows: SyntheticSpec::rows_for_days(model.training_days, step_ms),
        }
    }

    fn start_ms(&self) -> i64 {
        self.end_ms - (self.rows as i64 - 1) * self.step_ms
    }
}

/// Where the backfill stands: not asked, a working client, or the error that made it fall back.
enum Backfiller {
    Off,
    Client(PrometheusClient),
    Failed(String),
}

/// What a detector's first rows must fill: its reservoir's `capacity` and the rows its first
/// fit needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DetectorNeeds {
    pub(crate) capacity: usize,
    pub(crate) first_fit_rows: usize,
}

/// What a forecaster's first rows must give: at least `min_windows` windows of `span` rows
/// (lookback and horizon).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ForecasterNeeds {
    pub(crate) span: usize,
    pub(crate) min_windows: usize,
}

/// A model's first training rows: what they came from (`canopy_model_info`'s source) and the
/// event time they end at.
#[derive(Debug, Clone)]
pub(crate) struct FirstRows<T> {
    pub(crate) source: &'static str,
    pub(crate) end_ms: i64,
    pub(crate) rows: T,
}

/// A detector's rows: timestamps and the row-major vectors at them, oldest first.
pub(crate) type DetectorRows = FirstRows<(Vec<i64>, Vec<f64>)>;

/// A forecaster's rows: each entity's timestamps and row-major values, oldest first.
pub(crate) type ForecasterRows = FirstRows<Vec<(Labels, Vec<i64>, Vec<f64>)>>;

/// The configured training source, asked for each model's first rows in turn: a Prometheus that
/// fails once is not asked again (see the module doc).
pub(crate) struct TrainingSource<'a> {
    config: &'a Config,
    backfiller: Backfiller,
    now_ms: i64,
    max_entities: usize,
}

impl<'a> TrainingSource<'a> {
    /// The source `[source] data_source` names, the training ranges ending at `now_ms`, a
    /// backfill keeping at most `max_entities` entities per model; `None` (logged) for `none`,
    /// where models learn from the stream alone.
    pub(crate) fn new(
        config: &'a Config,
        now_ms: i64,
        max_entities: usize,
    ) -> Option<TrainingSource<'a>> {
        let source = config.source.data_source;
        if source == DataSource::None {
            tracing::info!("data_source = \"none\": models learn from the stream alone");
            return None;
        }
        let backfiller = match source {
            DataSource::Synthetic | DataSource::None => Backfiller::Off,
            _ => match PrometheusClient::new(&ClientOptions::from_config(&config.source)) {
                Ok(c) => Backfiller::Client(c),
                Err(e) => Backfiller::Failed(e.to_string()),
            },
        };
        Some(TrainingSource {
            config,
            backfiller,
            now_ms,
            max_entities,
        })
    }

    /// The model `name`'s training range, synthetic rows and backfill (`None` when it falls
    /// back to synthetic); `None` for a model the config does not have.
    fn fetch(&mut self, name: &str) -> Option<(Range, Synthetic, Option<Backfill>)> {
        let model = self.config.models.get(name)?;
        let range = Range::new(model, self.now_ms);
        let synthetic = synthesize(self.config, model, range);
        let real = fetch(
            &mut self.backfiller,
            self.config,
            name,
            model,
            range,
            self.max_entities,
        );
        Some((range, synthetic, real))
    }

    /// The first rows of detector `name`; `None` for a model the config does not have.
    pub(crate) fn detector(&mut self, name: &str, needs: DetectorNeeds) -> Option<DetectorRows> {
        let source = self.config.source.data_source;
        let (range, synthetic, fetched) = self.fetch(name)?;
        let capacity = needs.capacity;
        let (used, t, v) = match fetched {
            Some(real) => {
                let mut rows = real_rows(&real);
                rows.sort_by_key(|(t, _)| *t);
                let needed = needs.first_fit_rows;
                let mixed = ((rows.len() as f64) / (1.0 - synthetic_share(source))).ceil();
                if mixed as usize >= needed {
                    let (t, v) = detector_mix(&rows, &synthetic, synthetic_share(source), capacity);
                    (source_name(source), t, v)
                } else {
                    // Too short a history for a first fit: topped up with synthetic rows to the
                    // fit's count, never left untrained.
                    let share = 1.0 - rows.len() as f64 / needed as f64;
                    tracing::warn!(model = %name, real_rows = rows.len(), needed, "the backfill is too short for a first fit: topped up with synthetic rows (source hybrid)");
                    let (t, v) = detector_mix(&rows, &synthetic, share, capacity);
                    ("hybrid", t, v)
                }
            }
            None => {
                let (t, v) = detector_mix(&[], &synthetic, 1.0, capacity);
                ("synthetic", t, v)
            }
        };
        Some(FirstRows {
            source: used,
            end_ms: range.end_ms,
            rows: (t, v),
        })
    }

    /// The first rows of forecaster `name`; `None` for a model the config does not have.
    pub(crate) fn forecaster(
        &mut self,
        name: &str,
        needs: ForecasterNeeds,
    ) -> Option<ForecasterRows> {
        let source = self.config.source.data_source;
        let (range, synthetic, fetched) = self.fetch(name)?;
        let (used, entities) = match fetched {
            Some(real) => {
                let mut entities: Vec<(Labels, Vec<i64>, Vec<f64>)> = real
                    .history
                    .entities()
                    .map(|(l, r)| {
                        (
                            l.clone(),
                            r.t.iter().copied().collect(),
                            r.v.iter().copied().collect(),
                        )
                    })
                    .collect();
                let share = synthetic_share(source);
                let mut n = (((share / (1.0 - share)) * real.rows as f64).round() as usize)
                    .min(MAX_FORECASTER_SYNTHETIC_ROWS);
                let span = needs.span;
                let real_windows: usize = entities
                    .iter()
                    .map(|(_, t, _)| (t.len() + 1).saturating_sub(span))
                    .sum();
                let mut used = source_name(source);
                if real_windows < needs.min_windows {
                    // Too short a history for a first fit: the synthetic entity alone gives the
                    // fit its windows, never leaving the model untrained.
                    tracing::warn!(model = %name, real_windows, needed = needs.min_windows, "the backfill is too short for a first fit: topped up with synthetic rows (source hybrid)");
                    n = n
                        .max(span + needs.min_windows)
                        .min(MAX_FORECASTER_SYNTHETIC_ROWS);
                    used = "hybrid";
                }
                entities.push(synthetic_tail(&synthetic, n));
                (used, entities)
            }
            None => (
                "synthetic",
                vec![synthetic_tail(&synthetic, MAX_FORECASTER_SYNTHETIC_ROWS)],
            ),
        };
        Some(FirstRows {
            source: used,
            end_ms: range.end_ms,
            rows: entities,
        })
    }
}

fn synthesize(config: &Config, model: &ModelConfig, range: Range) -> Synthetic {
    generate(&SyntheticSpec {
        features: &model.features,
        step_ms: range.step_ms,
        end_ms: range.end_ms,
        rows: range.rows,
        anomaly_rate: config.source.anomaly_rate,
        seed: model.seed,
    })
}

/// The backfill for one model, or `None` (after a warning) when it falls back to synthetic.
fn fetch(
    backfiller: &mut Backfiller,
    config: &Config,
    name: &str,
    model: &ModelConfig,
    range: Range,
    max_entities: usize,
) -> Option<Backfill> {
    let url = &config.source.prometheus_url;
    let client = match backfiller {
        Backfiller::Off => return None,
        Backfiller::Failed(error) => {
            tracing::warn!(model = %name, %url, %error, "Prometheus at {url} failed earlier ({error}); falling back to synthetic");
            return None;
        }
        Backfiller::Client(c) => c,
    };
    let features: Vec<(String, String)> = model
        .features
        .iter()
        .map(|f| {
            (
                f.clone(),
                config.features.get(f).cloned().unwrap_or_default(),
            )
        })
        .collect();
    let request = BackfillRequest {
        model: name,
        features: &features,
        step_ms: range.step_ms,
        start_ms: range.start_ms(),
        end_ms: range.end_ms,
    };
    match backfill(client, &request, range.rows, max_entities) {
        Ok(b) => Some(b),
        Err(e) => {
            let error = e.to_string();
            tracing::warn!(model = %name, %url, %error, "cannot backfill from Prometheus at {url}: {error}; falling back to synthetic");
            *backfiller = Backfiller::Failed(error);
            None
        }
    }
}

/// Every complete backfilled row, with its timestamp.
fn real_rows(b: &Backfill) -> Vec<(i64, Vec<f64>)> {
    let n = b.history.n_features();
    let mut out = Vec::with_capacity(b.rows);
    for (_, rows) in b.history.entities() {
        let values: Vec<f64> = rows.v.iter().copied().collect();
        for (t, row) in rows.t.iter().zip(values.chunks_exact(n)) {
            if row.iter().all(|x| x.is_finite()) {
                out.push((*t, row.to_vec()));
            }
        }
    }
    out
}

/// `k` indices spread evenly over `0..n`.
fn evenly(n: usize, k: usize) -> impl Iterator<Item = usize> {
    let k = k.min(n);
    (0..k).map(move |i| i * n / k)
}

/// The detector's seed rows: backfilled `real` (sorted by time) and `synthetic`, the synthetic
/// ones making up `share` of at most `capacity` rows; sorted by time.
fn detector_mix(
    real: &[(i64, Vec<f64>)],
    synthetic: &Synthetic,
    share: f64,
    capacity: usize,
) -> (Vec<i64>, Vec<f64>) {
    let (n_real, n_syn) = if real.is_empty() || share >= 1.0 {
        (0, synthetic.rows().min(capacity))
    } else {
        let total = ((real.len() as f64 / (1.0 - share)).ceil() as usize).min(capacity);
        let n_syn = ((share * total as f64).round() as usize).min(synthetic.rows());
        (total - n_syn, n_syn)
    };
    let mut rows: Vec<(i64, &[f64])> = evenly(real.len(), n_real)
        .map(|i| (real[i].0, real[i].1.as_slice()))
        .chain(evenly(synthetic.rows(), n_syn).map(|i| (synthetic.t[i], synthetic.row(i))))
        .collect();
    rows.sort_by_key(|(t, _)| *t);
    let t = rows.iter().map(|(t, _)| *t).collect();
    let v = rows.iter().flat_map(|(_, r)| r.iter().copied()).collect();
    (t, v)
}

/// The forecaster's synthetic entity: the newest `n` synthetic rows.
fn synthetic_tail(synthetic: &Synthetic, n: usize) -> (Labels, Vec<i64>, Vec<f64>) {
    let from = synthetic.rows() - n.min(synthetic.rows());
    (
        synthetic_entity(),
        synthetic.t[from..].to_vec(),
        synthetic.v[from * synthetic.n_features..].to_vec(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn synthetic(rows: usize) -> Synthetic {
        let features = vec!["cpu".to_owned(), "memory".to_owned()];
        generate(&SyntheticSpec {
            features: &features,
            step_ms: 60_000,
            end_ms: 6_000_000_000,
            rows,
            anomaly_rate: 0.0,
            seed: 1,
        })
    }

    fn real(rows: usize) -> Vec<(i64, Vec<f64>)> {
        (0..rows as i64)
            .map(|i| {
                (
                    6_000_000_000 - (rows as i64 - 1 - i) * 60_000,
                    vec![-1.0, -1.0],
                )
            })
            .collect()
    }

    fn shares(t: &[i64], v: &[f64]) -> (usize, usize) {
        let real = v.chunks_exact(2).filter(|r| r[0] < 0.0).count();
        assert!(t.windows(2).all(|w| w[0] <= w[1]), "sorted by time");
        (real, t.len() - real)
    }

    #[test]
    fn prometheus_mixes_a_fifth_and_hybrid_half_synthetic_rows() {
        let s = synthetic(10_080);
        let (t, v) = detector_mix(&real(10_080), &s, 0.2, 10_080);
        assert_eq!(shares(&t, &v), (8_064, 2_016));
        let (t, v) = detector_mix(&real(10_080), &s, 0.5, 10_080);
        assert_eq!(shares(&t, &v), (5_040, 5_040));
        // little history: all of it, and synthetic rows to make the share
        let (t, v) = detector_mix(&real(800), &s, 0.2, 10_080);
        assert_eq!(shares(&t, &v), (800, 200));
        let (t, v) = detector_mix(&[], &s, 1.0, 10_080);
        assert_eq!(shares(&t, &v), (0, 10_080));
        // picked evenly: the kept real rows span the whole range
        let (t, _) = detector_mix(&real(10_080), &s, 0.5, 10_080);
        assert!(t[0] <= 6_000_000_000 - 10_000 * 60_000);
    }

    #[test]
    fn the_forecasters_synthetic_entity_is_the_newest_rows() {
        let s = synthetic(100);
        let (labels, t, v) = synthetic_tail(&s, 30);
        assert_eq!(labels.get("canopy_source"), Some("synthetic"));
        assert_eq!(t.len(), 30);
        assert_eq!(t.last(), Some(&6_000_000_000));
        assert_eq!(v.len(), 60);
        assert_eq!(&v[58..], s.row(99));
        assert_eq!(
            synthetic_tail(&s, 1_000).1.len(),
            100,
            "capped at what exists"
        );
    }
}
