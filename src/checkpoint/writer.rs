//! The checkpoint writer thread and the schedule that feeds it.
//!
//! Who does what:
//! - [`CheckpointSchedule`] lives on the evaluation thread. Each tick it asks, per model, whether
//!   a write is due: the published forest changed since the last write (a retrain finished), or
//!   `checkpoint.interval` has passed. If so it takes a snapshot — the forest is an `Arc` loaded
//!   lock-free from its `arc-swap` cell, the reservoir or history a plain copy — and offers it to
//!   the writer without waiting: when the writer is still busy with that many snapshots, this
//!   tick's is dropped and the next tick tries again. So scoring never waits on a disk.
//! - The writer thread ([`CheckpointWriter`]) owns the receiving end: it encodes each snapshot
//!   and writes it atomically ([`super::write_atomic`]), recording the outcome in the metrics.
//! - Shutdown: after the evaluation loop stops, [`CheckpointSchedule::finish`] hands over a final
//!   snapshot of every model (waiting for room this time), closes the channel and joins the
//!   writer once it has written everything: the last step of the agent's shutdown path.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use metrics::{counter, gauge, histogram};

use super::file::write_atomic;
use super::format::encode;
use super::saved::SavedModel;
use crate::live::detector::Detector;
use crate::live::forecaster::Forecaster;

/// The writer thread and the sending end of its channel.
pub(crate) struct CheckpointWriter {
    tx: SyncSender<SavedModel>,
    thread: JoinHandle<()>,
}

impl CheckpointWriter {
    /// Starts the writer; at most `queue` snapshots wait for it.
    pub(crate) fn spawn(model_dir: PathBuf, queue: usize) -> std::io::Result<CheckpointWriter> {
        let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
        let thread = std::thread::Builder::new()
            .name("checkpoint".into())
            .spawn(move || write_loop(&model_dir, rx))?;
        Ok(CheckpointWriter { tx, thread })
    }

    /// Offers a snapshot without waiting; false when the queue is full.
    pub(crate) fn try_submit(&self, model: SavedModel) -> bool {
        match self.tx.try_send(model) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => false,
            Err(TrySendError::Disconnected(_)) => {
                tracing::error!("the checkpoint writer has stopped");
                false
            }
        }
    }

    /// Writes `last` after whatever is queued, then stops the thread and waits for it.
    pub(crate) fn finish(self, last: Vec<SavedModel>) {
        for model in last {
            if self.tx.send(model).is_err() {
                tracing::error!("the checkpoint writer has stopped before the final checkpoint");
                break;
            }
        }
        drop(self.tx);
        if self.thread.join().is_err() {
            tracing::error!("the checkpoint writer panicked");
        }
    }
}

fn write_loop(model_dir: &std::path::Path, rx: Receiver<SavedModel>) {
    for model in rx {
        write_one(model_dir, &model);
    }
}

/// Encodes and writes one snapshot, recording the outcome.
fn write_one(model_dir: &std::path::Path, model: &SavedModel) {
    let started = Instant::now();
    let name = model.name.clone();
    let bytes = encode(model);
    let result = write_atomic(&model_dir.join(&name), &bytes);
    let seconds = started.elapsed().as_secs_f64();
    histogram!("canopy_checkpoint_write_duration_seconds", "model" => name.clone()).record(seconds);
    match result {
        Ok(()) => {
            counter!("canopy_checkpoint_writes_total", "model" => name.clone(), "result" => "ok")
                .increment(1);
            gauge!("canopy_checkpoint_size_bytes", "model" => name.clone()).set(bytes.len() as f64);
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            gauge!("canopy_checkpoint_last_success_timestamp_seconds", "model" => name.clone())
                .set(now);
            tracing::debug!(model = %name, bytes = bytes.len(), seconds, "checkpoint written");
        }
        Err(e) => {
            counter!("canopy_checkpoint_writes_total", "model" => name.clone(), "result" => "error")
                .increment(1);
            tracing::error!(model = %name, error = %e, "checkpoint write failed; the previous checkpoint stays");
        }
    }
}

/// When each model was last handed to the writer, and which forest it held.
struct Written {
    forest: usize,
    at: Instant,
}

/// Decides on the evaluation thread when each model is snapshotted for the writer.
pub(crate) struct CheckpointSchedule {
    writer: CheckpointWriter,
    interval: Duration,
    written: HashMap<String, Written>,
}

impl CheckpointSchedule {
    /// Starts from the models as they are now (restored forests count as written: the file
    /// already holds them).
    pub(crate) fn new(
        writer: CheckpointWriter,
        interval: Duration,
        detectors: &[Detector],
        forecasters: &[Forecaster],
    ) -> CheckpointSchedule {
        let now = Instant::now();
        let written = detectors
            .iter()
            .map(|d| (d.spec().name.clone(), d.published().identity()))
            .chain(
                forecasters
                    .iter()
                    .map(|f| (f.spec().name.clone(), f.published().identity())),
            )
            .map(|(name, forest)| (name, Written { forest, at: now }))
            .collect();
        CheckpointSchedule {
            writer,
            interval,
            written,
        }
    }

    /// Hands the writer a snapshot of each model whose forest changed or whose interval passed.
    pub(crate) fn tick(&mut self, detectors: &[Detector], forecasters: &[Forecaster]) {
        for d in detectors {
            let forest = d.published().identity();
            if self.due(&d.spec().name, forest) {
                self.offer(forest, SavedModel::of_detector(d));
            }
        }
        for f in forecasters {
            let forest = f.published().identity();
            if self.due(&f.spec().name, forest) {
                self.offer(forest, SavedModel::of_forecaster(f));
            }
        }
    }

    fn due(&self, name: &str, forest: usize) -> bool {
        forest != 0
            && self
                .written
                .get(name)
                .is_none_or(|w| w.forest != forest || w.at.elapsed() >= self.interval)
    }

    fn offer(&mut self, forest: usize, snapshot: Option<SavedModel>) {
        let Some(snapshot) = snapshot else { return };
        let name = snapshot.name.clone();
        if self.writer.try_submit(snapshot) {
            self.written.insert(
                name,
                Written {
                    forest,
                    at: Instant::now(),
                },
            );
        }
    }

    /// The final checkpoint of every model that has a forest, then the writer stops.
    pub(crate) fn finish(self, detectors: &[Detector], forecasters: &[Forecaster]) {
        let last = detectors
            .iter()
            .filter_map(SavedModel::of_detector)
            .chain(forecasters.iter().filter_map(SavedModel::of_forecaster))
            .collect();
        self.writer.finish(last);
    }
}
