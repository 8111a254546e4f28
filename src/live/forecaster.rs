//! The live forecaster: keeps each entity's feature history at the model's step, forecasts the
//! next `horizon` steps of the targets for every entity at every model step, and refits the
//! random forest in event time.
//!
//! Threads mirror the detector's: [`Forecaster::on_step`] runs on the evaluation thread (or in
//! `replay`), loads the published forest lock-free and predicts; training is a full refit on the
//! windows slid over every entity's history (a random forest is not incremental), run by the
//! forecaster's [`Trainer`] (inline or on the model's trainer thread) and published whole through
//! [`Published`].

use std::sync::Arc;
use std::time::Instant;

use metrics::{counter, gauge};

use super::published::{Published, TrainingInfo};
use super::trainer::{Trainer, TrainingMode, record_failed, record_trained};
use crate::config::{ModelConfig, RandomForestConfig};
use crate::entity_metrics::entity_gauge;
use crate::features::entities::{EntityHistory, entity_vectors, is_prior};
use crate::features::history::metric_labels;
use crate::features::{FeatureSet, StepResult};
use crate::model::matrix::row_major;
use crate::model::rforest::{RandomForestParams, RandomForestRegressor};
use crate::model::windows::{WindowSpec, training_windows};
use crate::series::Labels;

/// Entities a forecaster keeps history for; new ones beyond it are refused and counted.
pub(crate) const MAX_ENTITIES: usize = 1_000;

/// The fewest training windows a first fit needs: fewer is no forecast worth exporting.
pub(crate) const MIN_TRAINING_WINDOWS: usize = 100;

#[derive(Debug, thiserror::Error)]
pub enum ForecasterError {
    #[error("model `{model}`: feature `{feature}` is not configured")]
    UnknownFeature { model: String, feature: String },
    #[error("model `{model}`: cannot start its trainer thread: {source}")]
    Thread {
        model: String,
        source: std::io::Error,
    },
}

/// Everything that shapes one forecaster, resolved from the config.
#[derive(Debug, Clone)]
pub(crate) struct ForecasterSpec {
    pub(crate) name: String,
    pub(crate) features: Vec<String>,
    /// Each feature's PromQL expression as configured (trimmed), parallel to `features`.
    pub(crate) expressions: Vec<String>,
    pub(crate) targets: Vec<String>,
    /// Indices of `features` in the [`FeatureSet`].
    pub(crate) indices: Vec<usize>,
    pub(crate) window: WindowSpec,
    pub(crate) step_ms: i64,
    pub(crate) retrain_interval_ms: i64,
    /// Rows of history kept per entity: the training days at the model's step.
    pub(crate) max_rows: usize,
    /// Event time after its last step at which an entity's forecasts leave `/metrics`.
    pub(crate) stale_ms: i64,
    pub(crate) params: RandomForestParams,
}

impl ForecasterSpec {
    pub(crate) fn new(
        name: &str,
        model: &ModelConfig,
        forest: &RandomForestConfig,
        set: &FeatureSet,
        stale_steps: u32,
    ) -> Result<ForecasterSpec, ForecasterError> {
        let unknown = |feature: &String| ForecasterError::UnknownFeature {
            model: name.to_owned(),
            feature: feature.clone(),
        };
        let indices = model
            .features
            .iter()
            .map(|f| set.index_of(f).ok_or_else(|| unknown(f)))
            .collect::<Result<Vec<_>, _>>()?;
        let window = window_spec(model, forest).map_err(|t| unknown(&t))?;
        let step_ms = model.step.as_millis() as i64;
        Ok(ForecasterSpec {
            stale_ms: step_ms * i64::from(stale_steps),
            name: name.to_owned(),
            features: model.features.clone(),
            expressions: set.expressions(&indices),
            targets: forest.target.clone(),
            indices,
            window,
            step_ms,
            retrain_interval_ms: model.retrain_interval.as_millis() as i64,
            max_rows: (i64::from(model.training_days) * 86_400_000 / step_ms.max(1)).max(1)
                as usize,
            params: forest_params(model, forest),
        })
    }
}

/// The window layout of a model's config: its features in order, the targets as indices among
/// them. Shared with `canopy score`, so a batch fit and the live model read windows alike. A
/// target that is not one of the features is returned as the error.
pub(crate) fn window_spec(
    model: &ModelConfig,
    forest: &RandomForestConfig,
) -> Result<WindowSpec, String> {
    let targets = forest
        .target
        .iter()
        .map(|t| {
            model
                .features
                .iter()
                .position(|f| f == t)
                .ok_or_else(|| t.clone())
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(WindowSpec {
        n_features: model.features.len(),
        lookback: forest.lookback,
        horizon: forest.horizon,
        targets,
    })
}

/// The forest's parameters from a model's config, shared with `canopy score`.
pub(crate) fn forest_params(
    model: &ModelConfig,
    forest: &RandomForestConfig,
) -> RandomForestParams {
    RandomForestParams {
        n_estimators: forest.n_estimators,
        max_depth: forest.max_depth,
        min_samples_split: forest.min_samples_split,
        min_samples_leaf: forest.min_samples_leaf,
        max_features: forest.max_features,
        bootstrap: forest.bootstrap,
        seed: model.seed,
    }
}

/// One entity's forecast at one step: `values[h * targets + k]` is target `k`, `h + 1` steps ahead.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Forecast {
    pub(crate) entity: Labels,
    pub(crate) values: Vec<f64>,
}

/// A training: every entity's history (see [`Forecaster::training_history`]) at event time
/// `t_ms`, from `source`.
struct TrainJob {
    t_ms: i64,
    history: Vec<f64>,
    source: &'static str,
}

pub(crate) struct Forecaster {
    spec: Arc<ForecasterSpec>,
    history: EntityHistory,
    trainer: Trainer<TrainJob, RandomForestRegressor>,
    input: Vec<f64>,
}

impl Forecaster {
    pub(crate) fn new(
        spec: ForecasterSpec,
        training: TrainingMode,
    ) -> Result<Forecaster, ForecasterError> {
        let spec = Arc::new(spec);
        let shared = spec.clone();
        let trainer = Trainer::new(
            &spec.name,
            training,
            spec.retrain_interval_ms,
            move |published: &Published<RandomForestRegressor>, job| {
                train(&shared, published, job);
            },
        )
        .map_err(|source| ForecasterError::Thread {
            model: spec.name.clone(),
            source,
        })?;
        Ok(Forecaster {
            history: EntityHistory::new(spec.indices.len(), spec.max_rows, MAX_ENTITIES),
            input: vec![0.0; spec.window.n_inputs()],
            spec,
            trainer,
        })
    }

    /// Carries on from a checkpoint: publishes `forest`, refills each entity's history (rows of
    /// `n_features` values, `values.len() == timestamps.len() · n_features`, checked by the
    /// caller) and records what the forest was trained from. The first retrain then comes one
    /// `retrain_interval` of event time after the first step seen, never at once.
    pub(crate) fn restore<'a>(
        &mut self,
        forest: Arc<RandomForestRegressor>,
        entities: impl IntoIterator<Item = (Labels, &'a [i64], &'a [f64])>,
        info: TrainingInfo,
    ) {
        for (labels, t, v) in entities {
            self.history.insert_rows(labels, t, v);
        }
        self.trainer.restore(forest, info);
    }

    /// What the published forest was trained from.
    pub(crate) fn training_info(&self) -> Arc<TrainingInfo> {
        self.trainer.published().info()
    }

    pub(crate) fn spec(&self) -> &ForecasterSpec {
        &self.spec
    }

    /// The published forest, shared with the predict endpoints.
    pub(crate) fn published(&self) -> &Published<RandomForestRegressor> {
        self.trainer.published()
    }

    pub(crate) fn history(&self) -> &EntityHistory {
        &self.history
    }

    /// Records the step's complete vectors, forecasts every entity with a full lookback, and
    /// starts training when due. `None` for steps that are not the model's.
    pub(crate) fn on_step(&mut self, step: &StepResult) -> Option<Vec<Forecast>> {
        if step.t_ms.rem_euclid(self.spec.step_ms) != 0 {
            return None;
        }
        let vectors = entity_vectors(step, &self.spec.indices);
        let refused = self.history.push(step.t_ms, &vectors);
        if refused > 0 {
            counter!("canopy_model_entities_refused_total", "model" => self.spec.name.clone())
                .increment(refused as u64);
        }
        // A forest trained on synthetic rows alone knows the synthetic scale, not this stream's:
        // its forecasts would mislead (and fire capacity alerts), so none is made until the
        // stream's own training replaces it.
        let warming_up = self.training_info().source == "synthetic";
        gauge!("canopy_model_warming_up", "model" => self.spec.name.clone())
            .set(f64::from(u8::from(warming_up)));
        let forecasts = match self.trainer.published().load_full() {
            Some(model) if !warming_up => self.forecast_all(&model),
            _ => Vec::new(),
        };
        self.export(step.t_ms, &forecasts);
        let first_fit_rows =
            self.spec.window.lookback + self.spec.window.horizon + MIN_TRAINING_WINDOWS;
        let history = &self.history;
        if self
            .trainer
            .due(step.t_ms, || training_rows(history) >= first_fit_rows)
        {
            let job = self.job(step.t_ms, "live");
            self.trainer.start(step.t_ms, job);
        }
        Some(forecasts)
    }

    fn forecast_all(&mut self, model: &RandomForestRegressor) -> Vec<Forecast> {
        let (lookback, f) = (self.spec.window.lookback, self.spec.window.n_features);
        let mut out = Vec::new();
        for (entity, rows) in self.history.entities() {
            if rows.len() < lookback || is_prior(entity) {
                continue; // too short, or training rows rather than a live entity
            }
            let start = (rows.len() - lookback) * f;
            for (dst, src) in self.input.iter_mut().zip(rows.v.range(start..)) {
                *dst = *src;
            }
            if self.input.iter().any(|v| v.is_nan()) {
                continue; // a gap in the lookback: no forecast from incomplete input
            }
            let mut values = vec![0.0; self.spec.window.n_outputs()];
            if model.predict_row(&self.input, &mut values).is_ok() {
                out.push(Forecast {
                    entity: entity.clone(),
                    values,
                });
            }
        }
        out
    }

    fn export(&self, t: i64, forecasts: &[Forecast]) {
        let n_targets = self.spec.targets.len();
        for fc in forecasts {
            for (i, v) in fc.values.iter().enumerate() {
                let mut labels = metric_labels("model", &self.spec.name, &fc.entity);
                labels.push(metrics::Label::new(
                    "feature",
                    self.spec.targets[i % n_targets].clone(),
                ));
                labels.push(metrics::Label::new(
                    "steps_ahead",
                    (i / n_targets + 1).to_string(),
                ));
                entity_gauge("canopy_forecast", labels, *v, t, self.spec.stale_ms);
            }
        }
    }

    /// Every entity's history, concatenated with a row of NaN between entities so no window
    /// spans two of them.
    fn training_history(&self) -> Vec<f64> {
        let f = self.spec.window.n_features;
        let mut all = Vec::new();
        for (_, rows) in self.history.entities() {
            all.extend(rows.v.iter().copied());
            all.extend(std::iter::repeat_n(f64::NAN, f));
        }
        all
    }

    fn job(&self, t_ms: i64, source: &'static str) -> TrainJob {
        TrainJob {
            t_ms,
            history: self.training_history(),
            source,
        }
    }

    /// Adds each entity's rows from a training source (timestamps and row-major values, oldest
    /// first, NaN rows for gaps) to the history and fits a forest on it inline, recorded as
    /// trained from `source` at `end_ms`; the next refit comes one `retrain_interval` later.
    /// Returns whether a forest was published.
    pub(crate) fn seed(
        &mut self,
        entities: Vec<(Labels, Vec<i64>, Vec<f64>)>,
        end_ms: i64,
        source: &'static str,
    ) -> bool {
        for (labels, t, v) in entities {
            self.history.insert_rows(labels, &t, &v);
        }
        let job = self.job(end_ms, source);
        self.trainer.train_now(end_ms, job)
    }
}

/// The longest entity history, in rows.
fn training_rows(history: &EntityHistory) -> usize {
    history.entities().map(|(_, r)| r.len()).max().unwrap_or(0)
}

/// Fits a new forest on the windows of `history` and publishes it.
fn train(spec: &ForecasterSpec, published: &Published<RandomForestRegressor>, job: TrainJob) {
    let TrainJob {
        t_ms,
        history,
        source,
    } = job;
    let started = Instant::now();
    let model = spec.name.clone();
    let fitted = training_windows(&history, &spec.window)
        .map_err(|e| e.to_string())
        .and_then(|w| {
            if w.rows() < MIN_TRAINING_WINDOWS {
                return Err(format!(
                    "{} complete windows, fewer than {MIN_TRAINING_WINDOWS}",
                    w.rows()
                ));
            }
            let x = row_major(&w.x, spec.window.n_inputs()).map_err(|e| e.to_string())?;
            let y = row_major(&w.y, spec.window.n_outputs()).map_err(|e| e.to_string())?;
            RandomForestRegressor::fit(&spec.params, x, y)
                .map(|f| (f, w.rows()))
                .map_err(|e| e.to_string())
        });
    match fitted {
        Ok((forest, windows)) => {
            let info = TrainingInfo {
                source: source.into(),
                trained_at_ms: Some(t_ms),
                generation: published.info().generation + 1,
            };
            published.publish(Arc::new(forest), info);
            let seconds = started.elapsed().as_secs_f64();
            record_trained(&model, spec.params.n_estimators, seconds, source);
            tracing::info!(model = %model, windows, seconds, source, "forecaster trained");
        }
        Err(reason) => {
            record_failed(&model);
            tracing::warn!(model = %model, %reason, "forecaster training failed; the current model stays");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, ModelKind};

    const TOML: &str = "[evaluation]\nstep = \"1m\"\n[features]\ncpu = 'x'\nmem = 'y'\n\
        [models.f]\nkind = \"random_forest\"\nfeatures = [\"cpu\", \"mem\"]\ntarget = [\"cpu\"]\n\
        step = \"1m\"\nlookback = 6\nhorizon = 3\nn_estimators = 10\nretrain_interval = \"1h\"\n";

    fn forecaster() -> Forecaster {
        let config = Config::from_parts(Some((TOML, "t.toml")), &[]).expect("config");
        let set = FeatureSet::from_config(&config).expect("features");
        let m = &config.models["f"];
        let ModelKind::RandomForest(f) = &m.kind else {
            panic!("kind")
        };
        Forecaster::new(
            ForecasterSpec::new("f", m, f, &set, 5).expect("spec"),
            TrainingMode::Inline,
        )
        .expect("forecaster")
    }

    fn step(k: i64) -> StepResult {
        // cpu follows a 20-step cycle, mem is constant
        let cpu = ((k % 20) as f64 / 20.0 * std::f64::consts::TAU).sin();
        StepResult {
            t_ms: k * 60_000,
            values: vec![
                Some(vec![(Labels::default(), cpu)]),
                Some(vec![(Labels::default(), 0.5)]),
            ],
        }
    }

    #[test]
    fn trains_once_enough_windows_then_forecasts_the_cycle() {
        let mut f = forecaster();
        let first_fit = 6 + 3 + MIN_TRAINING_WINDOWS as i64;
        for k in 0..first_fit - 1 {
            assert!(f.on_step(&step(k)).expect("model step").is_empty());
        }
        assert!(f.published().load().is_none());
        f.on_step(&step(first_fit - 1));
        assert!(
            f.published().load().is_some(),
            "trained once {first_fit} rows were held"
        );
        let k = first_fit;
        let out = f.on_step(&step(k)).expect("model step");
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].values.len(), 3);
        for (h, v) in out[0].values.iter().enumerate() {
            let want = step(k + 1 + h as i64).values[0].as_ref().expect("cpu")[0].1;
            assert!(
                (v - want).abs() < 0.15,
                "h={} forecast {v} want {want}",
                h + 1
            );
        }
    }
}
