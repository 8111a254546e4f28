//! The published model: the one cell a live runtime's trainer publishes a model into and every
//! reader (the runtime's own steps, the predict endpoints, the checkpoint writer) loads it from.
//!
//! A model is immutable once built and replaced whole: [`Published::publish`] stores what the
//! model was trained from, then the model, each with one `arc-swap` store, so a reader never
//! takes a lock, never waits for a training, and a reader that sees the new model also sees its
//! [`TrainingInfo`]. A cell that is still empty means "no model yet" (not ready).

use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption, Guard};

/// What the published model was last trained from, for `canopy_model_info`, V2 model metadata
/// and checkpoints.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainingInfo {
    /// `live`, `synthetic`, `prometheus` or `hybrid`; empty while nothing is trained.
    pub source: String,
    /// Event time of the step that started the training.
    pub trained_at_ms: Option<i64>,
    /// Trainings that built the model: the forest's generation for a detector, the number of
    /// fits for a forecaster.
    pub generation: u64,
}

/// A model of type `M` and what it was trained from, shared by cloning (every clone is the same
/// cell).
pub struct Published<M> {
    model: Arc<ArcSwapOption<M>>,
    info: Arc<ArcSwap<TrainingInfo>>,
}

impl<M> Clone for Published<M> {
    fn clone(&self) -> Published<M> {
        Published {
            model: self.model.clone(),
            info: self.info.clone(),
        }
    }
}

impl<M> Default for Published<M> {
    fn default() -> Published<M> {
        Published::empty()
    }
}

impl<M> Published<M> {
    /// A cell with no model yet.
    pub(crate) fn empty() -> Published<M> {
        Published {
            model: Arc::new(ArcSwapOption::empty()),
            info: Arc::new(ArcSwap::from_pointee(TrainingInfo::default())),
        }
    }

    /// A cell holding `model`, trained as `info` says.
    pub fn of(model: Arc<M>, info: TrainingInfo) -> Published<M> {
        let cell = Published::empty();
        cell.publish(model, info);
        cell
    }

    /// Replaces the model whole: its training info first, then the model.
    pub(crate) fn publish(&self, model: Arc<M>, info: TrainingInfo) {
        self.info.store(Arc::new(info));
        self.model.store(Some(model));
    }

    /// The model, borrowed lock-free for as long as the guard lives (one request, one step).
    pub(crate) fn load(&self) -> Guard<Option<Arc<M>>> {
        self.model.load()
    }

    /// The model, as an `Arc` of its own.
    pub fn load_full(&self) -> Option<Arc<M>> {
        self.model.load_full()
    }

    /// A model has been published.
    pub(crate) fn is_ready(&self) -> bool {
        self.model.load().is_some()
    }

    /// What the published model was trained from.
    pub(crate) fn info(&self) -> Arc<TrainingInfo> {
        self.info.load_full()
    }

    /// The published model's identity (its allocation), 0 for none: a change means a new model
    /// was published.
    pub(crate) fn identity(&self) -> usize {
        self.model
            .load()
            .as_ref()
            .map_or(0, |m| Arc::as_ptr(m) as usize)
    }
}
