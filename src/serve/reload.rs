//! `canopy serve`'s models from checkpoint files: [`load_registry`] turns the saved models of a
//! model folder into the registry, and the [`CheckpointFollower`] follows each served
//! `model.ckpt` and swaps a replaced one in.
//!
//! A writer (`canopy train`, an agent's checkpoint writer) replaces a model file by renaming a
//! complete, fsynced temporary file over it, so the path always names a whole file: the old one
//! or the new one. [`CheckpointFollower::poll`] stamps every served path (its metadata and its
//! stored CRC, 4 bytes); a file whose [`FileStamp`] differs from the one served (another inode
//! after a rename, another length, modification time or CRC) is read and validated in full (CRC, decode, every
//! index) and must still answer what the served model answers: the same kind, the same features
//! in the same order, for a forecaster the same targets, lookback and horizon. Then its forest is
//! stored into the handle's `arc-swap` cell: a request in flight finishes with the forest it
//! loaded, the next one scores with the new forest, none waits, none fails, none sees half of
//! either. The served name never changes, whatever name the new file carries.
//!
//! Anything else keeps the last good model serving: a file that does not decode or no longer
//! fits is refused (logged with the reason and counted once per distinct file, not at every
//! poll; the next different file is tried again), and a file removed from disk leaves the model
//! served until a valid one appears. Readiness is never withdrawn. Nothing is moved aside or
//! written: `canopy serve` only reads.
//!
//! The follower runs on its own thread ([`follow`]), because reading and decoding a file (tens of
//! milliseconds for a large forecaster) is blocking work that must not hold up the async workers
//! answering requests.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, SystemTime};

use super::registry::{ModelHandle, Registry};
use crate::checkpoint::file::{FileStamp, load_models, read_stamped};
use crate::checkpoint::{CheckpointError, SavedData, SavedModel};

/// How often the served files are checked: a replaced model answers within about this long.
pub(crate) const RELOAD_EVERY: Duration = Duration::from_secs(2);

/// The `result` label values of `canopy_model_reloads_total`.
const RESULTS: &[&str] = &["ok", "corrupt", "shape_mismatch", "unreadable"];

/// A model served from a checkpoint file: the handle it is served through and the file it came
/// from.
#[derive(Clone)]
pub struct ServedFile {
    pub(crate) handle: ModelHandle,
    /// `isolation_forest` or `random_forest`.
    pub kind: &'static str,
    pub(crate) path: PathBuf,
    pub(crate) stamp: FileStamp,
    pub(crate) trained_at_ms: Option<i64>,
}

/// Reads the checkpoints of a model folder read-only ([`load_models`]) and serves each: every
/// handle is filled (ready).
pub fn load_registry(model_dir: &Path) -> Result<(Registry, Vec<ServedFile>), CheckpointError> {
    let served: Vec<ServedFile> = load_models(model_dir)?
        .into_iter()
        .map(|l| ServedFile {
            kind: l.saved.kind(),
            trained_at_ms: l.saved.training.trained_at_ms,
            handle: ModelHandle::saved(l.saved),
            path: l.path,
            stamp: l.stamp,
        })
        .collect();
    Ok((Registry::of(served.iter().map(|s| &s.handle)), served))
}

/// Every served checkpoint file, with what was last loaded from it.
pub(crate) struct CheckpointFollower {
    files: Vec<FollowedFile>,
}

struct FollowedFile {
    handle: ModelHandle,
    path: PathBuf,
    /// The file the served model came from.
    served: FileStamp,
    /// When the served model was trained: its checkpoint's training time, or the file's
    /// modification time when the checkpoint does not record one.
    trained_at: Option<SystemTime>,
    /// The last state of the path other than the served file that was reported, so that each is
    /// logged and counted once, not at every poll.
    reported: Option<Reported>,
}

#[derive(Debug, Clone, PartialEq)]
enum Reported {
    Refused(FileStamp),
    Missing,
    Unreadable(String),
}

/// What one poll did with one file.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum PollOutcome {
    /// The served file is still there (or a change was already reported).
    Unchanged,
    /// A new file was validated and is now served.
    Reloaded,
    /// A new file was refused; `result` is its `canopy_model_reloads_total` label.
    Refused {
        result: &'static str,
        reason: String,
    },
    /// The file is gone; the last loaded model keeps serving.
    Missing,
}

impl CheckpointFollower {
    /// Follows the files `loaded` came from, each serving through its handle (under the name
    /// the handle carries). Registers every `canopy_model_reloads_total` series at 0.
    pub(crate) fn new(loaded: Vec<ServedFile>) -> CheckpointFollower {
        let files: Vec<FollowedFile> = loaded
            .into_iter()
            .map(|l| FollowedFile {
                trained_at: trained_at(l.trained_at_ms, &l.stamp),
                handle: l.handle,
                path: l.path,
                served: l.stamp,
                reported: None,
            })
            .collect();
        for file in &files {
            for &result in RESULTS {
                metrics::counter!("canopy_model_reloads_total", "model" => file.handle.name().to_owned(), "result" => result)
                    .increment(0);
            }
        }
        let follower = CheckpointFollower { files };
        follower.export_ages();
        follower
    }

    /// Checks every file once, swapping in those replaced by a valid model; returns what it did
    /// with each, in the order the files were given.
    pub(crate) fn poll(&mut self) -> Vec<PollOutcome> {
        let outcomes = self.files.iter_mut().map(FollowedFile::poll).collect();
        self.export_ages();
        outcomes
    }

    /// `canopy_model_checkpoint_age_seconds`: wall-clock time since each served model was
    /// trained (0 for a training time ahead of this machine's clock).
    fn export_ages(&self) {
        let now = SystemTime::now();
        for file in &self.files {
            if let Some(trained_at) = file.trained_at {
                let age = now.duration_since(trained_at).unwrap_or(Duration::ZERO);
                metrics::gauge!("canopy_model_checkpoint_age_seconds", "model" => file.handle.name().to_owned())
                    .set(age.as_secs_f64());
            }
        }
    }
}

impl FollowedFile {
    fn poll(&mut self) -> PollOutcome {
        let stamp = match FileStamp::read(&self.path) {
            Ok(stamp) => stamp,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return self.missing(),
            Err(e) => return self.unreadable(e.to_string()),
        };
        if stamp == self.served {
            self.reported = None;
            return PollOutcome::Unchanged;
        }
        if self.reported == Some(Reported::Refused(stamp)) {
            return PollOutcome::Unchanged;
        }
        match read_stamped(&self.path) {
            Ok((saved, stamp)) => match shape_change(&self.handle, &saved) {
                None => self.swap_in(saved, stamp),
                Some(reason) => self.refuse(stamp, "shape_mismatch", reason),
            },
            Err(CheckpointError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                self.missing()
            }
            Err(CheckpointError::Io { source, .. }) => self.unreadable(source.to_string()),
            // A file that does not decode is refused under the stamp the poll saw: read again
            // only once the path names another file.
            Err(e) => self.refuse(stamp, "corrupt", e.to_string()),
        }
    }

    fn swap_in(&mut self, saved: SavedModel, stamp: FileStamp) -> PollOutcome {
        let training = saved.training.clone();
        match (&self.handle, saved.data) {
            (ModelHandle::Detector(d), SavedData::Detector { forest, .. }) => {
                d.model.publish(forest, saved.training);
            }
            (ModelHandle::Forecaster(f), SavedData::Forecaster { forest, .. }) => {
                f.model.publish(forest, saved.training);
            }
            // `shape_change` refused every other pairing.
            _ => return PollOutcome::Unchanged,
        }
        self.served = stamp;
        self.trained_at = trained_at(training.trained_at_ms, &stamp);
        self.reported = None;
        metrics::counter!("canopy_model_reloads_total", "model" => self.handle.name().to_owned(), "result" => "ok")
            .increment(1);
        tracing::info!(
            model = self.handle.name(),
            path = %self.path.display(),
            source = %training.source,
            trained_at = %self.trained_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()).unwrap_or_default(),
            "reloaded the model from its replaced checkpoint"
        );
        PollOutcome::Reloaded
    }

    fn refuse(&mut self, stamp: FileStamp, result: &'static str, reason: String) -> PollOutcome {
        self.reported = Some(Reported::Refused(stamp));
        metrics::counter!("canopy_model_reloads_total", "model" => self.handle.name().to_owned(), "result" => result)
            .increment(1);
        tracing::warn!(
            model = self.handle.name(),
            path = %self.path.display(),
            result,
            reason = %reason,
            "refused the replaced checkpoint: the last good model keeps serving"
        );
        PollOutcome::Refused { result, reason }
    }

    fn missing(&mut self) -> PollOutcome {
        if self.reported != Some(Reported::Missing) {
            self.reported = Some(Reported::Missing);
            tracing::warn!(
                model = self.handle.name(),
                path = %self.path.display(),
                "the model file is gone: the last loaded model keeps serving until a valid one appears"
            );
        }
        PollOutcome::Missing
    }

    fn unreadable(&mut self, error: String) -> PollOutcome {
        if self.reported.as_ref() == Some(&Reported::Unreadable(error.clone())) {
            return PollOutcome::Unchanged;
        }
        self.reported = Some(Reported::Unreadable(error.clone()));
        metrics::counter!("canopy_model_reloads_total", "model" => self.handle.name().to_owned(), "result" => "unreadable")
            .increment(1);
        tracing::warn!(
            model = self.handle.name(),
            path = %self.path.display(),
            error = %error,
            "cannot read the model file: the last good model keeps serving"
        );
        PollOutcome::Refused {
            result: "unreadable",
            reason: error,
        }
    }
}

/// The checkpoint's training time (event time, which for `canopy train` and a live agent is the
/// wall clock of the training), else the file's modification time.
fn trained_at(trained_at_ms: Option<i64>, stamp: &FileStamp) -> Option<SystemTime> {
    match trained_at_ms.and_then(|ms| u64::try_from(ms).ok()) {
        Some(ms) => Some(SystemTime::UNIX_EPOCH + Duration::from_millis(ms)),
        None => stamp.modified(),
    }
}

/// Why `saved` cannot replace the model `handle` serves, if it cannot: a client's rows and the
/// answers it reads must keep their meaning, so the kind, the features (names and order) and,
/// for a forecaster, the targets, lookback and horizon must all be the served model's.
fn shape_change(handle: &ModelHandle, saved: &SavedModel) -> Option<String> {
    let features = |served: &[String]| {
        (saved.features != served).then(|| {
            format!(
                "its features [{}] are not the served [{}]",
                saved.features.join(", "),
                served.join(", ")
            )
        })
    };
    match (handle, &saved.data) {
        (ModelHandle::Detector(d), SavedData::Detector { .. }) => features(&d.features),
        (
            ModelHandle::Forecaster(f),
            SavedData::Forecaster {
                targets,
                lookback,
                horizon,
                ..
            },
        ) => features(&f.features).or_else(|| {
            (targets != &f.targets || *lookback != f.lookback || *horizon != f.horizon).then(|| {
                format!(
                    "it forecasts [{}] over {horizon} steps from {lookback}, the served model [{}] over {} from {}",
                    targets.join(", "),
                    f.targets.join(", "),
                    f.horizon,
                    f.lookback
                )
            })
        }),
        (served, _) => Some(format!(
            "it holds a model of kind {}, the served one is of kind {}",
            saved.kind(),
            match served {
                ModelHandle::Detector(_) => "isolation_forest",
                ModelHandle::Forecaster(_) => "random_forest",
            }
        )),
    }
}

/// Polls `follower` every `every` until `stop`'s sender is dropped (the server's shutdown).
pub(crate) fn follow(mut follower: CheckpointFollower, every: Duration, stop: Receiver<()>) {
    loop {
        match stop.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {
                follower.poll();
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use crate::checkpoint::file::{CHECKPOINT_FILE, write_atomic};
    use crate::checkpoint::saved::SavedReservoir;
    use crate::checkpoint::{SavedModel, encode};
    use crate::live::TrainingInfo;
    use crate::model::iforest::{IsolationForest, IsolationForestParams};
    use crate::model::matrix::row_major;
    use crate::model::rforest::{RandomForestParams, RandomForestRegressor};

    const ROW: [f64; 2] = [0.9, 0.1];

    fn detector(features: &[&str], seed: u64, trained_at_ms: i64) -> SavedModel {
        let width = features.len();
        let rows: Vec<f64> = (0..200 * width)
            .map(|k| (k % (13 + width)) as f64 / 17.0)
            .collect();
        let params = IsolationForestParams {
            n_estimators: 20,
            max_samples: 32,
            seed,
            ..IsolationForestParams::default()
        };
        let forest = IsolationForest::fit(&params, row_major(&rows, width).expect("whole rows"))
            .expect("fit");
        SavedModel {
            name: "detector".into(),
            features: features.iter().map(|f| (*f).to_owned()).collect(),
            expressions: features.iter().map(|f| format!("avg({f})")).collect(),
            step_ms: 60_000,
            retrain_interval_ms: 3_600_000,
            max_age_ms: 86_400_000,
            training: TrainingInfo {
                source: "synthetic".into(),
                trained_at_ms: Some(trained_at_ms),
                generation: 1,
            },
            data: SavedData::Detector {
                forest: Arc::new(forest),
                replace_fraction: 0.1,
                reservoir_size: 1_000,
                gate_anomalies: true,
                reservoir: SavedReservoir::default(),
            },
        }
    }

    fn forecaster() -> SavedModel {
        let history: Vec<f64> = (0..60).flat_map(|k| [k as f64, (k % 3) as f64]).collect();
        let (mut x, mut y) = (Vec::new(), Vec::new());
        for i in 0..60 - 3 {
            x.extend_from_slice(&history[i * 2..(i + 2) * 2]);
            y.push(history[(i + 2) * 2]);
        }
        let params = RandomForestParams {
            n_estimators: 3,
            seed: 1,
            ..RandomForestParams::default()
        };
        let (x, y) = (row_major(&x, 4), row_major(&y, 1));
        let (x, y) = (x.expect("rows of 4"), y.expect("rows of 1"));
        let forest = RandomForestRegressor::fit(&params, x, y).expect("fit");
        SavedModel {
            data: SavedData::Forecaster {
                forest: Arc::new(forest),
                targets: vec!["a".into()],
                lookback: 2,
                horizon: 1,
                history: Vec::new(),
            },
            ..detector(&["a", "b"], 1, 0)
        }
    }

    fn served_score(follower: &CheckpointFollower) -> f64 {
        let ModelHandle::Detector(d) = &follower.files[0].handle else {
            panic!("a detector is served");
        };
        d.model
            .load_full()
            .expect("served")
            .anomaly_score(&ROW)
            .expect("score")
    }

    fn score_of(saved: &SavedModel) -> f64 {
        let SavedData::Detector { forest, .. } = &saved.data else {
            panic!("a detector");
        };
        forest.anomaly_score(&ROW).expect("score")
    }

    /// Writes `bytes` as the folder's model file the way every writer does: a whole file renamed
    /// over the old one.
    fn replace(folder: &std::path::Path, bytes: &[u8]) {
        write_atomic(folder, bytes).expect("write");
    }

    #[test]
    fn a_replaced_valid_checkpoint_is_swapped_in_once() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = detector(&["a", "b"], 1, 1_000);
        replace(dir.path(), &encode(&first));
        let (_, loaded) = load_registry(dir.path()).expect("load");
        let mut follower = CheckpointFollower::new(loaded);
        assert_eq!(follower.poll(), [PollOutcome::Unchanged]);
        assert_eq!(served_score(&follower), score_of(&first));

        let second = detector(&["a", "b"], 2, 2_000);
        assert_ne!(score_of(&second), score_of(&first), "a different model");
        replace(dir.path(), &encode(&second));
        assert_eq!(follower.poll(), [PollOutcome::Reloaded]);
        assert_eq!(served_score(&follower), score_of(&second));
        let ModelHandle::Detector(d) = &follower.files[0].handle else {
            panic!("a detector is served");
        };
        assert_eq!(d.model.info().trained_at_ms, Some(2_000));
        assert_eq!(follower.poll(), [PollOutcome::Unchanged]);
    }

    #[test]
    fn bad_files_are_refused_once_each_and_the_last_good_model_keeps_serving() {
        let dir = tempfile::tempdir().expect("temp dir");
        let good = detector(&["a", "b"], 1, 1_000);
        replace(dir.path(), &encode(&good));
        let (_, loaded) = load_registry(dir.path()).expect("load");
        let mut follower = CheckpointFollower::new(loaded);

        let mut corrupt = encode(&detector(&["a", "b"], 2, 2_000));
        let middle = corrupt.len() / 2;
        corrupt[middle] ^= 0xff;
        replace(dir.path(), &corrupt);
        let outcome = follower.poll();
        assert!(
            matches!(&outcome[..], [PollOutcome::Refused { result: "corrupt", reason }] if reason.contains("CRC")),
            "{outcome:?}"
        );
        assert_eq!(follower.poll(), [PollOutcome::Unchanged], "refused once");
        assert_eq!(served_score(&follower), score_of(&good));

        for (saved, why) in [
            (detector(&["b", "a"], 2, 2_000), "features [b, a]"),
            (detector(&["a", "b", "c"], 2, 2_000), "features [a, b, c]"),
            (forecaster(), "random_forest"),
        ] {
            replace(dir.path(), &encode(&saved));
            let outcome = follower.poll();
            assert!(
                matches!(&outcome[..], [PollOutcome::Refused { result: "shape_mismatch", reason }] if reason.contains(why)),
                "{outcome:?}"
            );
            assert_eq!(served_score(&follower), score_of(&good));
        }

        std::fs::remove_file(dir.path().join(CHECKPOINT_FILE)).expect("remove");
        assert_eq!(follower.poll(), [PollOutcome::Missing]);
        assert_eq!(served_score(&follower), score_of(&good));
        let next = detector(&["a", "b"], 3, 3_000);
        replace(dir.path(), &encode(&next));
        assert_eq!(follower.poll(), [PollOutcome::Reloaded]);
        assert_eq!(served_score(&follower), score_of(&next));
    }
}
