//! The live anomaly-detector: scores every complete entity vector at the model's steps, keeps
//! the reservoir, and retrains in event time.
//!
//! Who does what, and on which thread:
//! - [`Detector::on_step`] runs on the evaluation thread (or in `replay`'s loop). It loads the
//!   published forest (a lock-free `arc-swap` load), scores, offers each vector to the reservoir
//!   through the [`AnomalyGate`], and decides when training is due: the first fit once the
//!   stream has given `max_samples` vectors, then a partial retrain every `retrain_interval` of
//!   event time.
//! - Training runs where [`TrainingMode`] says, through the detector's [`Trainer`] (the trainer
//!   thread behind a channel of one, or inline for `replay`).
//! - Either way the new forest is built from a snapshot of the reservoir and published whole
//!   through [`Published`], so a reader never waits and never sees a half-built forest.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use metrics::{counter, gauge};

use super::published::{Published, TrainingInfo};
use super::trainer::{Trainer, TrainingMode, record_failed, record_trained};
use crate::config::{self, IsolationForestConfig, ModelConfig};
use crate::entity_metrics::{entity_counter, entity_gauge};
use crate::features::entities::entity_vectors;
use crate::features::history::metric_labels;
use crate::features::{FeatureSet, StepResult};
use crate::model::iforest::{
    Contamination, IsolationForest, IsolationForestError, IsolationForestParams,
};
use crate::model::likelihood::{EntityLikelihood, LikelihoodParams, ScoreReference};
use crate::model::matrix::row_major;
use crate::model::reservoir::{AnomalyGate, Reservoir, ReservoirError};
use crate::series::Labels;

#[derive(Debug, thiserror::Error)]
pub enum DetectorError {
    #[error("model `{model}`: feature `{feature}` is not configured")]
    UnknownFeature { model: String, feature: String },
    #[error("model `{model}`: {source}")]
    Reservoir {
        model: String,
        source: ReservoirError,
    },
    #[error("model `{model}`: cannot start its trainer thread: {source}")]
    Thread {
        model: String,
        source: std::io::Error,
    },
}

/// Everything that shapes one detector, resolved from the config.
#[derive(Debug, Clone)]
pub struct DetectorSpec {
    pub(crate) name: String,
    pub(crate) features: Vec<String>,
    /// Each feature's PromQL expression as configured (trimmed), parallel to `features`.
    pub(crate) expressions: Vec<String>,
    /// Indices of `features` in the [`FeatureSet`].
    pub(crate) indices: Vec<usize>,
    pub(crate) step_ms: i64,
    pub(crate) retrain_interval_ms: i64,
    pub(crate) max_age_ms: u64,
    pub(crate) params: IsolationForestParams,
    pub(crate) replace_fraction: f64,
    pub(crate) reservoir_size: usize,
    pub(crate) gate_anomalies: bool,
    pub(crate) likelihood: LikelihoodParams,
    /// Event time after its last step at which an entity's series leave `/metrics`.
    pub stale_ms: i64,
}

impl DetectorSpec {
    pub fn new(
        name: &str,
        model: &ModelConfig,
        forest: &IsolationForestConfig,
        set: &FeatureSet,
        stale_steps: u32,
    ) -> Result<DetectorSpec, DetectorError> {
        let indices = model
            .features
            .iter()
            .map(|f| {
                set.index_of(f)
                    .ok_or_else(|| DetectorError::UnknownFeature {
                        model: name.to_owned(),
                        feature: f.clone(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DetectorSpec {
            name: name.to_owned(),
            features: model.features.clone(),
            expressions: set.expressions(&indices),
            indices,
            step_ms: model.step.as_millis() as i64,
            stale_ms: model.step.as_millis() as i64 * i64::from(stale_steps),
            retrain_interval_ms: model.retrain_interval.as_millis() as i64,
            max_age_ms: u64::from(model.training_days) * 86_400_000,
            params: forest_params(model, forest),
            replace_fraction: forest.replace_fraction,
            reservoir_size: forest.reservoir_size,
            gate_anomalies: forest.gate_anomalies,
            likelihood: LikelihoodParams {
                window: forest.likelihood_window,
                threshold: forest.threshold,
                suppress_ms: forest.suppress.as_millis() as i64,
                recurrence_ms: forest.recurrence.as_millis() as i64,
                recurrence_tolerance_ms: forest.recurrence_tolerance.as_millis() as i64,
                surprise_offset: forest.rarity_unit.map_or(0.0, |unit| {
                    (model.step.as_secs_f64() / unit.as_secs_f64()).log10()
                }),
            },
        })
    }

    /// The most vectors the reservoir can hold: `reservoir_size`, or fewer when `training_days`
    /// at the model's step is fewer.
    pub(crate) fn reservoir_capacity(&self) -> usize {
        let by_age = self.max_age_ms / self.step_ms.max(1) as u64;
        self.reservoir_size
            .min(usize::try_from(by_age).unwrap_or(usize::MAX).max(1))
    }

    /// Vectors the stream must give before the first fit: `max_samples`, or the reservoir's
    /// capacity when that is smaller (scikit-learn's `max_samples = min(max_samples, n)`), so
    /// that no configuration waits for more vectors than it can ever hold.
    pub(crate) fn first_fit_rows(&self) -> usize {
        self.params.max_samples.min(self.reservoir_capacity())
    }

    /// A warning for a configuration whose reservoir holds fewer vectors than `max_samples`:
    /// each tree is then grown on the whole reservoir.
    pub(crate) fn small_reservoir_warning(&self) -> Option<String> {
        let capacity = self.reservoir_capacity();
        (capacity < self.params.max_samples).then(|| {
            format!(
                "model `{}`: the reservoir holds at most {capacity} vectors (reservoir_size {}, training_days {} at step {}), fewer than max_samples = {}: the first model is trained once {capacity} vectors have arrived, each tree on all of them",
                self.name,
                self.reservoir_size,
                self.max_age_ms / 86_400_000,
                humantime::format_duration(std::time::Duration::from_millis(self.step_ms.max(0) as u64)),
                self.params.max_samples,
            )
        })
    }
}

/// The forest's parameters from a model's config: shared by the live detector and `canopy score`,
/// so a batch fit and a streamed one are shaped by the same keys.
pub(crate) fn forest_params(
    model: &ModelConfig,
    forest: &IsolationForestConfig,
) -> IsolationForestParams {
    IsolationForestParams {
        n_estimators: forest.n_estimators,
        max_samples: forest.max_samples,
        max_features: forest.max_features,
        contamination: match forest.contamination {
            config::Contamination::Auto => Contamination::Auto,
            config::Contamination::Fraction(f) => Contamination::Fraction(f),
        },
        seed: model.seed,
    }
}

/// One entity's score at one step, with scikit-learn's three values and canopy's 0..1 score.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Scored {
    pub(crate) entity: Labels,
    pub(crate) score_samples: f64,
    pub(crate) decision_function: f64,
    /// `-1` anomalous, `1` normal.
    pub(crate) predict: i8,
    /// s in 0..1, higher is more anomalous (`-score_samples`).
    pub(crate) anomaly_score: f64,
    /// The calibrated 0..1 score alerts use (see [`crate::model::likelihood`]).
    pub(crate) likelihood: f64,
    /// Flagged: `likelihood` reached the model's threshold (what `canopy_anomaly` exports).
    pub(crate) anomaly: bool,
}

/// The entity state of a detector: its likelihood and when it was last scored.
struct EntityState {
    likelihood: EntityLikelihood,
    last_seen_ms: i64,
}

/// Entity states not scored for this long are forgotten, so churning entities cannot grow
/// memory: long enough to ride out a scrape gap, short enough to drop a gone pod the same hour.
const ENTITY_IDLE_MS: i64 = 3_600_000;

/// The warm-up's progress: live vectors replace any prior's rows, and forests are fit on them
/// from scratch at 8, 16, 32, … live vectors until the first regular fit's count.
#[derive(Debug, Clone, Copy)]
struct WarmUp {
    /// The reservoir still holds the prior's rows (dropped at the first live step).
    holds_prior: bool,
    /// The live vector count that triggers the next refit.
    next_fit: usize,
}

/// Live vectors before the first refit that replaces a prior: enough for trees of depth 3.
const WARM_UP_FIRST_FIT: usize = 8;

/// Model steps in a row a feature must be missing before it is logged.
const MISSING_STEPS_BEFORE_LOG: u32 = 5;

/// A snapshot of the reservoir to train on.
struct TrainJob {
    training: Vec<f64>,
    threshold: Vec<f64>,
    step_ms: i64,
    /// What the rows came from, for `canopy_model_info`.
    source: &'static str,
    /// Fit a new forest from scratch (replacing a prior) rather than retrain the published one.
    fresh: bool,
}

pub struct Detector {
    spec: Arc<DetectorSpec>,
    /// The published forest's scores of its reservoir, stored by the trainer just before the
    /// forest it belongs to, so a step that sees a new forest finds its reference already there.
    reference: Arc<ArcSwap<ScoreReference>>,
    entities: HashMap<Labels, EntityState>,
    /// The detector has not yet fit a forest on `first_fit_rows` vectors of this stream: it starts
    /// new, or its forest came from a prior (synthetic rows, a backfill, or a checkpoint of
    /// either). See [`Detector::warm_up_step`].
    warm_up: Option<WarmUp>,
    /// Per feature, the model steps in a row at which it has been missing.
    missing_streak: Vec<u32>,
    /// Features already logged as missing, so each is logged once.
    reported_missing: BTreeSet<usize>,
    reservoir: Reservoir,
    gate: AnomalyGate,
    trainer: Trainer<TrainJob, IsolationForest>,
}

impl Detector {
    /// A detector with no model yet. `Background` starts the trainer thread, which ends when the
    /// detector is dropped.
    pub fn new(spec: DetectorSpec, training: TrainingMode) -> Result<Detector, DetectorError> {
        let reservoir = Reservoir::new(
            spec.indices.len(),
            spec.reservoir_size,
            Some(spec.max_age_ms),
        )
        .map_err(|source| DetectorError::Reservoir {
            model: spec.name.clone(),
            source,
        })?;
        let spec = Arc::new(spec);
        let reference = Arc::new(ArcSwap::from_pointee(ScoreReference::default()));
        let (shared, cell) = (spec.clone(), reference.clone());
        let trainer = Trainer::new(
            &spec.name,
            training,
            spec.retrain_interval_ms,
            move |published: &Published<IsolationForest>, job| {
                train(&shared, &cell, published, job);
            },
        )
        .map_err(|source| DetectorError::Thread {
            model: spec.name.clone(),
            source,
        })?;
        Ok(Detector {
            missing_streak: vec![0; spec.indices.len()],
            spec,
            reference,
            entities: HashMap::new(),
            // A new detector warms up on the stream from its first vector.
            warm_up: Some(WarmUp {
                holds_prior: false,
                next_fit: WARM_UP_FIRST_FIT,
            }),
            reported_missing: BTreeSet::new(),
            reservoir,
            gate: AnomalyGate::default(),
            trainer,
        })
    }

    /// Carries on from a checkpoint: publishes `forest`, refills the reservoir with `vectors`
    /// (timestamp, row, trainable; oldest first) and records what the forest was trained from.
    /// The first retrain then comes one `retrain_interval` of event time after the first step
    /// seen, never at once. Returns how many vectors the reservoir kept (its capacity and age
    /// limit still apply).
    pub(crate) fn restore<'a>(
        &mut self,
        forest: Arc<IsolationForest>,
        vectors: impl IntoIterator<Item = (i64, &'a [f64], bool)>,
        info: TrainingInfo,
    ) -> usize {
        let mut kept = 0;
        for (t, row, trainable) in vectors {
            let pushed = if trainable {
                self.reservoir.push(t, row)
            } else {
                self.reservoir.push_untrainable(t, row)
            };
            kept += usize::from(matches!(pushed, Ok(true)));
        }
        self.reference
            .store(Arc::new(ScoreReference::of(&forest, self.reservoir.rows())));
        self.warm_up = if info.source != "live" {
            Some(WarmUp {
                holds_prior: true,
                next_fit: WARM_UP_FIRST_FIT,
            })
        } else if kept < self.spec.first_fit_rows() {
            // A checkpoint written during the warm-up: carry it on from the rows it kept.
            Some(WarmUp {
                holds_prior: false,
                next_fit: (kept + 1).next_power_of_two().max(WARM_UP_FIRST_FIT),
            })
        } else {
            None
        };
        self.trainer.restore(forest, info);
        kept
    }

    /// What the published forest was trained from.
    pub(crate) fn training_info(&self) -> Arc<TrainingInfo> {
        self.trainer.published().info()
    }

    /// The training reservoir, for checkpoints.
    pub(crate) fn reservoir(&self) -> &Reservoir {
        &self.reservoir
    }

    pub(crate) fn spec(&self) -> &DetectorSpec {
        &self.spec
    }

    /// The published forest, shared with the predict endpoints.
    pub fn published(&self) -> &Published<IsolationForest> {
        self.trainer.published()
    }

    /// Still warming up: no forest fit on `first_fit_rows` vectors of this stream yet, so no
    /// step is flagged (see [`Detector::warm_up_step`]).
    pub(crate) fn warming_up(&self) -> bool {
        self.warm_up.is_some()
    }

    /// Scores the step's complete entity vectors (when `step` is one of the model's steps),
    /// feeds the reservoir and starts training when due. `None` for steps that are not the
    /// model's; an empty list while no model is trained yet.
    pub(crate) fn on_step(&mut self, step: &StepResult) -> Option<Vec<Scored>> {
        if step.t_ms.rem_euclid(self.spec.step_ms) != 0 {
            return None;
        }
        let t = step.t_ms;
        let vectors = entity_vectors(step, &self.spec.indices);
        if vectors.is_empty() {
            self.report_missing(step);
        } else {
            self.missing_streak.fill(0);
        }
        if let Some(w) = self
            .warm_up
            .as_mut()
            .filter(|w| w.holds_prior && !vectors.is_empty())
        {
            // Live data replaces the prior's rows from the first live vector on.
            w.holds_prior = false;
            self.reservoir.clear();
        }
        let warming_up = self.warm_up.is_some();
        let model = self.trainer.published().load_full();
        let reference = self.reference.load();
        let mut scored = Vec::with_capacity(vectors.len());
        for (entity, row) in &vectors {
            let pushed = match &model {
                Some(m) => {
                    if let Ok(mut s) = self.score(m, &reference, t, entity, row) {
                        // A forest that has not seen this stream does not alert on it.
                        s.anomaly &= !warming_up;
                        scored.push(s);
                    }
                    // The gate judges by the published forest, which during the warm-up knows
                    // only the prior: every live vector is trained on.
                    if self.spec.gate_anomalies && !warming_up {
                        self.gate.offer(&mut self.reservoir, m, t, row).map(drop)
                    } else {
                        self.reservoir.push(t, row).map(drop)
                    }
                }
                None => self.reservoir.push(t, row).map(drop),
            };
            if let Err(e) = pushed {
                tracing::debug!(model = %self.spec.name, error = %e, "vector kept out of the reservoir");
            }
        }
        self.reservoir.expire(t);
        self.entities
            .retain(|_, e| t - e.last_seen_ms <= ENTITY_IDLE_MS.max(self.spec.step_ms * 10));
        self.export(t, &scored, model.as_deref());
        let first_fit_ready = self.reservoir.len() >= self.spec.first_fit_rows();
        let due = self.trainer.due(t, || first_fit_ready);
        if let Some(w) = self.warm_up {
            self.warm_up_step(t, w);
            return Some(scored);
        }
        if due {
            self.start_training(t, false);
        }
        Some(scored)
    }

    /// The warm-up, for a new detector and after a prior. Forests are fit from scratch on the
    /// stream's vectors at 8, 16, 32, … of them, so every step scores within minutes of the
    /// first vector, and `canopy_anomaly` is held at 0 until the reservoir reaches the regular
    /// first fit's count, `min(max_samples, capacity)`, whose fit ends the warm-up: a forest of
    /// a few dozen vectors, and a likelihood reference as small, cannot yet tell rare from new.
    /// A prior (synthetic rows, a backfill or a checkpoint of either) has ranges that need not
    /// be this stream's (a synthetic CPU of 0.4 on an idle node's 0.01 would put every live
    /// vector outside the forest's ranges: a constant score, every step flagged), so it only
    /// serves until live vectors arrive: its rows leave the reservoir at the first live step.
    fn warm_up_step(&mut self, t: i64, w: WarmUp) {
        if w.holds_prior {
            return; // no live vector yet
        }
        let live = self.reservoir.len();
        let enough = self.spec.first_fit_rows();
        if live < w.next_fit.min(enough) {
            return;
        }
        self.start_training(t, true);
        self.warm_up = (live < enough).then_some(WarmUp {
            holds_prior: false,
            next_fit: (w.next_fit * 2).min(enough),
        });
        if self.warm_up.is_none() {
            tracing::info!(model = %self.spec.name, vectors = live, "warm-up over: the model alerts on what it learned from the stream");
        }
    }

    /// Scores one entity's vector: scikit-learn's values from the forest, then the likelihood
    /// from the forest's reference and the entity's recent surprises.
    fn score(
        &mut self,
        m: &IsolationForest,
        reference: &ScoreReference,
        t: i64,
        entity: &Labels,
        row: &[f64],
    ) -> Result<Scored, IsolationForestError> {
        let score_samples = m.score_sample(row)?;
        let decision_function = score_samples - m.offset();
        let anomaly_score = -score_samples;
        let state = self
            .entities
            .entry(entity.clone())
            .or_insert_with(|| EntityState {
                likelihood: EntityLikelihood::default(),
                last_seen_ms: t,
            });
        state.last_seen_ms = t;
        let l = state.likelihood.update(
            &self.spec.likelihood,
            t,
            reference.tail_probability(anomaly_score),
        );
        Ok(Scored {
            entity: entity.clone(),
            score_samples,
            decision_function,
            predict: if decision_function < 0.0 { -1 } else { 1 },
            anomaly_score,
            likelihood: l.likelihood,
            anomaly: l.alert,
        })
    }

    /// Counts each feature that left the model's vector incomplete at a step (no result at all,
    /// or only NaN), and logs each feature once, when it has been missing for
    /// [`MISSING_STEPS_BEFORE_LOG`] model steps in a row (the first steps after a start often
    /// lack a `rate`'s second sample; that is not worth a warning).
    fn report_missing(&mut self, step: &StepResult) {
        for (k, &i) in self.spec.indices.iter().enumerate() {
            let present = step
                .values
                .get(i)
                .and_then(Option::as_ref)
                .is_some_and(|vs| vs.iter().any(|(_, v)| v.is_finite()));
            if present {
                self.missing_streak[k] = 0;
                continue;
            }
            self.missing_streak[k] = self.missing_streak[k].saturating_add(1);
            let feature = &self.spec.features[k];
            counter!(
                "canopy_model_incomplete_vectors_total",
                "model" => self.spec.name.clone(),
                "feature" => feature.clone()
            )
            .increment(1);
            if self.missing_streak[k] >= MISSING_STEPS_BEFORE_LOG && self.reported_missing.insert(k)
            {
                tracing::warn!(
                    model = %self.spec.name,
                    feature = %feature,
                    step = step.t_ms,
                    "the model's vector has been incomplete for {MISSING_STEPS_BEFORE_LOG} steps: feature `{feature}` has no value (are the series it reads being sent? see /api/v1/series); counted in canopy_model_incomplete_vectors_total, logged once"
                );
            }
        }
    }

    fn start_training(&mut self, t: i64, fresh: bool) {
        let job = self.job(t, "live", fresh);
        self.trainer.start(t, job);
    }

    /// A snapshot of the reservoir to train on at `t`.
    fn job(&mut self, t: i64, source: &'static str, fresh: bool) -> TrainJob {
        TrainJob {
            training: self.reservoir.training_rows(),
            threshold: self.reservoir.rows().to_vec(),
            step_ms: t,
            source,
            fresh,
        }
    }

    /// Fills the reservoir with `rows` (row-major, at `timestamps`, oldest first) from a
    /// training source and fits a forest on them inline, recorded as trained from `source` at
    /// `end_ms`; the next retrain then comes one `retrain_interval` of event time later.
    /// Returns whether a forest was published.
    pub fn seed(
        &mut self,
        timestamps: &[i64],
        rows: &[f64],
        end_ms: i64,
        source: &'static str,
    ) -> bool {
        let n = self.spec.indices.len();
        for (t, row) in timestamps.iter().zip(rows.chunks_exact(n)) {
            if let Err(e) = self.reservoir.push(*t, row) {
                tracing::debug!(model = %self.spec.name, error = %e, "seed row kept out of the reservoir");
            }
        }
        self.reservoir.expire(end_ms);
        if self.reservoir.is_empty() {
            return false;
        }
        let job = self.job(end_ms, source, true);
        let trained = self.trainer.train_now(end_ms, job);
        if trained {
            self.warm_up = Some(WarmUp {
                holds_prior: true,
                next_fit: WARM_UP_FIRST_FIT,
            });
        }
        trained
    }

    fn export(&self, t: i64, scored: &[Scored], model: Option<&IsolationForest>) {
        let name = &self.spec.name;
        let stale = self.spec.stale_ms;
        for s in scored {
            let labels = metric_labels("model", name, &s.entity);
            entity_gauge(
                "canopy_anomaly_score",
                labels.clone(),
                s.anomaly_score,
                t,
                stale,
            );
            entity_gauge(
                "canopy_anomaly_likelihood",
                labels.clone(),
                s.likelihood,
                t,
                stale,
            );
            let flag = f64::from(u8::from(s.anomaly));
            entity_gauge("canopy_anomaly", labels.clone(), flag, t, stale);
            entity_counter("canopy_anomalies_total", labels, flag, t, stale);
        }
        gauge!("canopy_model_reservoir_size", "model" => name.clone())
            .set(self.reservoir.len() as f64);
        gauge!("canopy_model_warming_up", "model" => name.clone())
            .set(f64::from(u8::from(self.warm_up.is_some())));
        if let (Some(last), Some(_)) = (self.trainer.last_train_ms(), model) {
            gauge!("canopy_model_age_seconds", "model" => name.clone())
                .set((t - last) as f64 / 1000.0);
        }
    }
}

/// Fits (no model yet) or partially retrains (replacing the oldest trees) and publishes the
/// forest, its likelihood reference first.
fn train(
    spec: &DetectorSpec,
    reference: &ArcSwap<ScoreReference>,
    published: &Published<IsolationForest>,
    job: TrainJob,
) {
    let started = Instant::now();
    let base = published.load_full();
    let n = spec.indices.len();
    let fitted = || -> Result<IsolationForest, IsolationForestError> {
        let training = row_major(&job.training, n)?;
        match &base {
            Some(b) if !job.fresh => b.retrained(
                training,
                row_major(&job.threshold, n)?,
                spec.replace_fraction,
            ),
            _ => IsolationForest::fit(&spec.params, training),
        }
    };
    let result = fitted();
    let model = spec.name.clone();
    match result {
        Ok(forest) => {
            let replaced = match &base {
                Some(_) if !job.fresh => ((spec.replace_fraction * spec.params.n_estimators as f64)
                    .ceil() as usize)
                    .min(spec.params.n_estimators),
                _ => forest.trees().len(),
            };
            // The likelihood's reference: the new forest's scores of the rows its threshold was
            // estimated on. Stored before the forest, so a step that loads the new forest finds it.
            reference.store(Arc::new(ScoreReference::of(&forest, &job.threshold)));
            let info = TrainingInfo {
                source: job.source.into(),
                trained_at_ms: Some(job.step_ms),
                generation: forest.generation(),
            };
            published.publish(Arc::new(forest), info);
            let seconds = started.elapsed().as_secs_f64();
            record_trained(&model, replaced, seconds, job.source);
            gauge!("canopy_model_last_trained_step_timestamp_seconds", "model" => model.clone())
                .set(job.step_ms as f64 / 1000.0);
            tracing::info!(
                model = %model,
                rows = job.training.len() / n.max(1),
                trees_replaced = replaced,
                seconds,
                source = job.source,
                "model trained"
            );
        }
        Err(e) => {
            record_failed(&model);
            tracing::warn!(model = %model, error = %e, "training failed; the current model stays");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn detector(toml: &str) -> (Detector, FeatureSet) {
        let config = Config::from_parts(Some((toml, "t.toml")), &[]).expect("config");
        let set = FeatureSet::from_config(&config).expect("features");
        let m = &config.models["d"];
        let crate::config::ModelKind::IsolationForest(f) = &m.kind else {
            panic!("kind")
        };
        let spec = DetectorSpec::new("d", m, f, &set, 5).expect("spec");
        (
            Detector::new(spec, TrainingMode::Inline).expect("detector"),
            set,
        )
    }

    fn step(t_ms: i64, a: f64, b: f64) -> StepResult {
        StepResult {
            t_ms,
            values: vec![
                Some(vec![(Labels::default(), a)]),
                Some(vec![(Labels::default(), b)]),
            ],
        }
    }

    const TOML: &str = "[evaluation]\nstep = \"1m\"\n[features]\na = 'x'\nb = 'y'\n\
        [models.d]\nkind = \"isolation_forest\"\nfeatures = [\"a\", \"b\"]\nstep = \"1m\"\n\
        max_samples = 16\nn_estimators = 20\nretrain_interval = \"10m\"\n";

    #[test]
    fn warms_up_then_trains_at_max_samples_and_retrains_on_event_time() {
        let (mut d, _) = detector(TOML);
        assert_eq!(d.on_step(&step(30_000, 1.0, 1.0)), None, "not a model step");
        let mut warm_up_forest = None;
        for k in 0..15 {
            let out = d
                .on_step(&step(k * 60_000, (k % 5) as f64, (k % 3) as f64))
                .expect("model step");
            // No forest before 8 vectors; from then on the warm-up's forest scores every
            // vector, and nothing is flagged.
            assert_eq!(out.len(), usize::from(k >= 8), "step {k}");
            assert!(out.iter().all(|s| !s.anomaly), "step {k}");
            assert_eq!(d.published().load().is_some(), k >= 7, "step {k}");
            assert!(d.warm_up.is_some(), "step {k}");
            warm_up_forest = d.published().load_full();
        }
        d.on_step(&step(15 * 60_000, 0.0, 0.0));
        assert!(d.warm_up.is_none(), "warmed up at max_samples vectors");
        let first = d
            .published()
            .load_full()
            .expect("trained at the 16th vector");
        assert!(!Arc::ptr_eq(
            &first,
            &warm_up_forest.expect("warm-up forest")
        ));
        // the published model scores each complete vector; an outlier scores above a typical row
        let out = d.on_step(&step(16 * 60_000, 100.0, -100.0)).expect("step");
        assert_eq!(out.len(), 1);
        let typical = first.anomaly_score(&[2.0, 1.0]).expect("score");
        assert!(
            out[0].anomaly_score > typical,
            "{} vs {typical}",
            out[0].anomaly_score
        );
        assert_eq!(out[0].predict == -1, out[0].decision_function < 0.0);
        // the next retrain comes one retrain_interval (10 steps) after the first training
        for k in 17..25 {
            d.on_step(&step(k * 60_000, (k % 5) as f64, (k % 3) as f64));
        }
        assert!(Arc::ptr_eq(
            &first,
            &d.published().load_full().expect("model")
        ));
        d.on_step(&step(25 * 60_000, 1.0, 1.0));
        let second = d.published().load_full().expect("model");
        assert!(
            !Arc::ptr_eq(&first, &second),
            "retrained at 10 minutes of event time"
        );
        assert!(second.generation() > first.generation());
    }

    #[test]
    fn rarity_unit_offsets_the_surprise_by_the_log_of_step_over_unit() {
        let offset = |extra: &str| {
            let config = Config::from_parts(Some((&format!("{TOML}{extra}"), "t.toml")), &[])
                .expect("config");
            let set = FeatureSet::from_config(&config).expect("features");
            let m = &config.models["d"];
            let crate::config::ModelKind::IsolationForest(f) = &m.kind else {
                panic!("kind")
            };
            DetectorSpec::new("d", m, f, &set, 5)
                .expect("spec")
                .likelihood
                .surprise_offset
        };
        assert_eq!(offset(""), 0.0, "per step by default");
        assert_eq!(
            offset("rarity_unit = \"1m\"\n"),
            0.0,
            "the unit is the step"
        );
        assert!((offset("rarity_unit = \"5m\"\n") - 0.2f64.log10()).abs() < 1e-12);
    }

    #[test]
    fn live_and_replay_give_the_same_likelihoods_from_the_same_vectors() {
        // The live agent trains on a background thread, replay inline; both score through
        // `on_step`. Fed the same vectors, and with each background training awaited, they give
        // the same scores, likelihoods and flags.
        let toml = format!("{TOML}threshold = 0.95\nlikelihood_window = 1\n");
        let config = Config::from_parts(Some((&toml, "t.toml")), &[]).expect("config");
        let set = FeatureSet::from_config(&config).expect("features");
        let m = &config.models["d"];
        let crate::config::ModelKind::IsolationForest(f) = &m.kind else {
            panic!("kind")
        };
        let spec = || DetectorSpec::new("d", m, f, &set, 5).expect("spec");
        let mut replay = Detector::new(spec(), TrainingMode::Inline).expect("detector");
        let mut live = Detector::new(spec(), TrainingMode::Background).expect("detector");
        // A fresh fit (the warm-up's) can repeat a generation: the fit's start time tells them
        // apart.
        let generation = |d: &Detector| {
            (
                d.published().load().as_ref().map(|f| f.generation()),
                d.training_info().trained_at_ms,
            )
        };
        let mut flagged = 0;
        for k in 0..80 {
            let (a, b) = if k % 23 == 22 {
                (40.0, -30.0)
            } else {
                ((k % 5) as f64, (k % 3) as f64)
            };
            let s = step(k * 60_000, a, b);
            let expected = replay.on_step(&s).expect("model step");
            let got = live.on_step(&s).expect("model step");
            assert_eq!(got, expected, "step {k}");
            flagged += got.iter().filter(|x| x.anomaly).count();
            let deadline = Instant::now() + std::time::Duration::from_secs(10);
            while generation(&live) != generation(&replay) && Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            assert_eq!(generation(&live), generation(&replay), "after step {k}");
        }
        assert!(flagged > 0, "the outliers were flagged on both paths");
    }

    #[test]
    fn a_checkpoint_taken_during_the_warm_up_carries_it_on() {
        let (mut d, _) = detector(TOML);
        for k in 0..10 {
            d.on_step(&step(k * 60_000, (k % 5) as f64, (k % 3) as f64));
        }
        let forest = d.published().load_full().expect("the warm-up's forest");
        let rows: Vec<f64> = d.reservoir().values().collect();
        let times: Vec<i64> = (0..10).map(|k| k * 60_000).collect();
        let info = TrainingInfo {
            source: "live".into(),
            trained_at_ms: Some(7 * 60_000),
            generation: 1,
        };
        let (mut restored, _) = detector(TOML);
        let vectors = times
            .iter()
            .zip(rows.chunks_exact(2))
            .map(|(t, r)| (*t, r, true));
        assert_eq!(restored.restore(forest, vectors, info.clone()), 10);
        let w = restored
            .warm_up
            .expect("still warming up: 10 of 16 vectors");
        assert_eq!((w.holds_prior, w.next_fit), (false, 16));
        for k in 10..16 {
            let out = restored.on_step(&step(k * 60_000, 1.0, 1.0)).expect("step");
            assert!(out.iter().all(|s| !s.anomaly), "step {k}");
        }
        assert!(restored.warm_up.is_none(), "the fit at 16 vectors ends it");

        // A checkpoint of a full reservoir needs no warm-up.
        let (mut full, _) = detector(TOML);
        let forest = restored.published().load_full().expect("forest");
        let rows: Vec<f64> = restored.reservoir().values().collect();
        let times: Vec<i64> = (0..16).map(|k| k * 60_000).collect();
        let vectors = times
            .iter()
            .zip(rows.chunks_exact(2))
            .map(|(t, r)| (*t, r, true));
        full.restore(forest, vectors, info);
        assert!(full.warm_up.is_none());
    }

    #[test]
    fn a_prior_warms_up_on_live_vectors_without_alerting() {
        // The prior: 200 synthetic rows around (100, 100). The live stream is around (1, 1), far
        // outside the prior's ranges, which would score every live vector alike and flag it.
        let toml = format!("{TOML}threshold = 0.5\nlikelihood_window = 1\n");
        let (mut d, _) = detector(&toml);
        let times: Vec<i64> = (0..200).map(|k| -200 * 60_000 + k * 60_000).collect();
        let rows: Vec<f64> = (0..400).map(|k| 100.0 + (k % 7) as f64).collect();
        assert!(d.seed(&times, &rows, 0, "synthetic"));
        assert_eq!(d.reservoir().len(), 200);
        // A first step without data (a `rate` still waiting for its second sample) is no live
        // vector: the prior stays, and so does the warm-up.
        let empty = StepResult {
            t_ms: 0,
            values: vec![None, None],
        };
        assert_eq!(d.on_step(&empty), Some(Vec::new()));
        assert_eq!(d.reservoir().len(), 200);
        assert!(d.warm_up.is_some());
        let live = |k: i64| step(k * 60_000, (k % 5) as f64 / 4.0, (k % 3) as f64 / 2.0);
        let (mut scores, mut held) = (Vec::new(), 0);
        for k in 1..=16 {
            let out = d.on_step(&live(k)).expect("model step");
            assert_eq!(out.len(), 1, "the prior scores from the first live step");
            assert!(!out[0].anomaly, "no alert while warming up (step {k})");
            held += usize::from(out[0].likelihood >= 0.5);
            assert!(d.warm_up.is_some() || k == 16, "step {k}");
            if k > 8 {
                scores.push(out[0].anomaly_score);
            }
        }
        assert_eq!(
            d.reservoir().len(),
            16,
            "the prior's rows left at the first live step"
        );
        assert!(d.warm_up.is_none(), "warmed up at max_samples live vectors");
        assert_eq!(d.training_info().source, "live");
        scores.sort_by(f64::total_cmp);
        assert!(
            scores[scores.len() - 1] - scores[0] > 0.05,
            "refit on live vectors at 8, the score follows the live data: {scores:?}"
        );
        assert!(
            held >= 7,
            "the prior found the first live vectors beyond anything it knew, and was held back"
        );
        // Warmed up, the detector alerts again on what it learned from the stream.
        let mut flagged = 0;
        for k in 17..40 {
            let out = d.on_step(&live(k)).expect("model step");
            assert_eq!(out[0].anomaly, out[0].likelihood >= 0.5, "step {k}");
            flagged += usize::from(out[0].anomaly);
        }
        assert!(
            flagged < 23,
            "not every live step is flagged once warmed up"
        );
    }

    #[test]
    fn background_training_publishes_without_blocking_the_step() {
        let config = Config::from_parts(Some((TOML, "t.toml")), &[]).expect("config");
        let set = FeatureSet::from_config(&config).expect("features");
        let m = &config.models["d"];
        let crate::config::ModelKind::IsolationForest(f) = &m.kind else {
            panic!("kind")
        };
        let mut d = Detector::new(
            DetectorSpec::new("d", m, f, &set, 5).expect("spec"),
            TrainingMode::Background,
        )
        .expect("detector");
        for k in 0..16 {
            d.on_step(&step(k * 60_000, (k % 5) as f64, (k % 3) as f64));
        }
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        while d.published().load().is_none() && Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert!(
            d.published().load().is_some(),
            "the trainer thread published a forest"
        );
    }
}
