//! A live model's trainer: where its trainings run, when the next one is due, and the cell the
//! trained models are published in. The detector and the forecaster each own one, with their own
//! job type `J` (what a training is given) and model type `M` (what it publishes).
//!
//! Who does what, and on which thread:
//! - the runtime calls [`Trainer::due`] and [`Trainer::start`] from its step, on the evaluation
//!   thread (or in `replay`'s loop);
//! - with [`TrainingMode::Background`], the job goes to the model's trainer thread (`train-NAME`)
//!   through a channel of one: a training still running when the next is due makes that interval
//!   skipped and counted (`canopy_model_retrains_skipped_total`), never queued, so the step never
//!   waits. The thread owns nothing but the job it runs and a clone of the published cell; it
//!   ends when the trainer, and with it the channel's sender, is dropped;
//! - with [`TrainingMode::Inline`] the job runs on the caller's thread, which `replay` uses so
//!   that the same file always gives the same results;
//! - either way the training function publishes through [`Published`], so readers never wait.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};

use metrics::{counter, histogram};

use super::published::Published;

/// Where training runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrainingMode {
    /// On the caller's thread: deterministic, for `replay` and tests.
    Inline,
    /// On the model's trainer thread.
    Background,
}

/// What runs a training: fits a model on the job and publishes it (or logs why not).
type TrainFn<J, M> = dyn Fn(&Published<M>, J) + Send + Sync;

pub(crate) struct Trainer<J, M> {
    name: String,
    published: Published<M>,
    train: Arc<TrainFn<J, M>>,
    /// The trainer thread's channel; `None` trains inline.
    queue: Option<SyncSender<J>>,
    retrain_interval_ms: i64,
    /// Event time of the last training started.
    last_train_ms: Option<i64>,
    /// The published model came from a checkpoint and no step has been seen since: the first
    /// step starts the retrain interval instead of training at once.
    restored: bool,
}

impl<J: Send + 'static, M: Send + Sync + 'static> Trainer<J, M> {
    /// A trainer with nothing published yet, retraining every `retrain_interval_ms` of event
    /// time. `Background` starts the trainer thread.
    pub(crate) fn new(
        name: &str,
        mode: TrainingMode,
        retrain_interval_ms: i64,
        train: impl Fn(&Published<M>, J) + Send + Sync + 'static,
    ) -> std::io::Result<Trainer<J, M>> {
        let published = Published::empty();
        let train: Arc<TrainFn<J, M>> = Arc::new(train);
        let queue = match mode {
            TrainingMode::Inline => None,
            TrainingMode::Background => {
                let (tx, jobs) = std::sync::mpsc::sync_channel::<J>(1);
                let (cell, run) = (published.clone(), train.clone());
                std::thread::Builder::new()
                    .name(format!("train-{name}"))
                    .spawn(move || {
                        for job in jobs {
                            run(&cell, job);
                        }
                    })?;
                Some(tx)
            }
        };
        Ok(Trainer {
            name: name.to_owned(),
            published,
            train,
            queue,
            retrain_interval_ms,
            last_train_ms: None,
            restored: false,
        })
    }
}

impl<J, M> Trainer<J, M> {
    /// The cell trainings publish into.
    pub(crate) fn published(&self) -> &Published<M> {
        &self.published
    }

    /// Event time of the last training started.
    pub(crate) fn last_train_ms(&self) -> Option<i64> {
        self.last_train_ms
    }

    /// Whether a training is due at step `t`: the first once `first_fit_ready` says so, then one
    /// every retrain interval. After [`Trainer::restore`], the first step starts the interval.
    pub(crate) fn due(&mut self, t: i64, first_fit_ready: impl FnOnce() -> bool) -> bool {
        if std::mem::take(&mut self.restored) {
            self.last_train_ms = Some(t);
        }
        match self.last_train_ms {
            None => first_fit_ready(),
            Some(last) => t - last >= self.retrain_interval_ms,
        }
    }

    /// Starts a training at step `t`: inline, or handed to the trainer thread (skipped and
    /// counted when the previous one is still running).
    pub(crate) fn start(&mut self, t: i64, job: J) {
        match &self.queue {
            None => {
                (self.train)(&self.published, job);
                self.last_train_ms = Some(t);
            }
            Some(tx) => match tx.try_send(job) {
                Ok(()) => self.last_train_ms = Some(t),
                Err(TrySendError::Full(_)) => {
                    // the previous training is still running: skip this interval, not every step
                    self.last_train_ms = Some(t);
                    counter!("canopy_model_retrains_skipped_total", "model" => self.name.clone())
                        .increment(1);
                }
                Err(TrySendError::Disconnected(_)) => {
                    tracing::error!(model = %self.name, "the trainer thread has stopped");
                }
            },
        }
    }

    /// Trains on the caller's thread whatever the mode (a model's first training from a
    /// training source, at `end_ms`); the next retrain comes one interval later. Returns
    /// whether a model is published.
    pub(crate) fn train_now(&mut self, end_ms: i64, job: J) -> bool {
        (self.train)(&self.published, job);
        let trained = self.published.is_ready();
        if trained {
            self.last_train_ms = Some(end_ms);
        }
        trained
    }

    /// Publishes a model restored from a checkpoint; its first retrain comes one interval after
    /// the first step seen.
    pub(crate) fn restore(&mut self, model: Arc<M>, info: super::published::TrainingInfo) {
        self.published.publish(model, info);
        self.last_train_ms = None;
        self.restored = true;
    }
}

/// Counts a training that published a model, for either kind.
pub(crate) fn record_trained(
    model: &str,
    trees_replaced: usize,
    seconds: f64,
    source: &'static str,
) {
    counter!("canopy_model_retrains_total", "model" => model.to_owned(), "result" => "ok")
        .increment(1);
    counter!("canopy_model_trees_replaced_total", "model" => model.to_owned())
        .increment(trees_replaced as u64);
    histogram!("canopy_model_retrain_duration_seconds", "model" => model.to_owned())
        .record(seconds);
    super::info::set_model_info(model, source);
}

/// Counts a training that failed (the published model stays).
pub(crate) fn record_failed(model: &str) {
    counter!("canopy_model_retrains_total", "model" => model.to_owned(), "result" => "error")
        .increment(1);
}
