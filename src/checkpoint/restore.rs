//! Restoring the agent's models at start. For each configured model: a valid checkpoint whose
//! model still means what the config's does is published and its reservoir or history refilled;
//! anything else is moved aside with a logged reason (path, what failed), counted in
//! `canopy_checkpoint_restores_total{model, result}`, and the model trains anew.
//!
//! "Means the same" is decided on what shapes the numbers, not on names: the same kind and step,
//! as many features, each with the same PromQL expression (compared in `promql-parser`'s
//! canonical form, so spacing and equivalent spellings do not count), and for the forecaster the
//! same targets (by position among the features), lookback and horizon. A feature renamed with
//! its expression unchanged still restores. A file written before checkpoints recorded the
//! expressions cannot show what its features meant and is set aside as a mismatch.

use std::path::Path;

use metrics::counter;

use super::CheckpointError;
use super::file::{TEMP_FILE, model_path, move_aside, read};
use super::saved::{SavedData, SavedModel};
use crate::live::detector::Detector;
use crate::live::forecaster::Forecaster;
use crate::promql::canonical;

/// Restores every model that has a usable checkpoint in `model_dir`; returns how many.
pub(crate) fn restore_models(
    model_dir: &Path,
    detectors: &mut [Detector],
    forecasters: &mut [Forecaster],
) -> usize {
    let mut restored = 0;
    for d in detectors {
        let name = d.spec().name.clone();
        if let Some(saved) = load(model_dir, &name, |s| check_detector(s, d)) {
            let SavedData::Detector {
                forest, reservoir, ..
            } = saved.data
            else {
                continue; // check_detector refused every other kind
            };
            let nf = saved.features.len();
            let vectors = reservoir
                .timestamps_ms
                .iter()
                .zip(reservoir.values.chunks_exact(nf))
                .zip(&reservoir.trainable)
                .map(|((&t, row), &trainable)| (t, row, trainable));
            let kept = d.restore(forest, vectors, saved.training);
            done(&name, &format!("{kept} reservoir vectors"));
            restored += 1;
        }
    }
    for f in forecasters {
        let name = f.spec().name.clone();
        if let Some(saved) = load(model_dir, &name, |s| check_forecaster(s, f)) {
            let SavedData::Forecaster {
                forest, history, ..
            } = saved.data
            else {
                continue; // check_forecaster refused every other kind
            };
            let entities = history.len();
            f.restore(
                forest,
                history.iter().map(|e| {
                    (
                        e.labels.clone(),
                        e.timestamps_ms.as_slice(),
                        e.values.as_slice(),
                    )
                }),
                saved.training,
            );
            done(&name, &format!("{entities} entities of history"));
            restored += 1;
        }
    }
    restored
}

fn done(name: &str, what: &str) {
    counter!("canopy_checkpoint_restores_total", "model" => name.to_owned(), "result" => "ok")
        .increment(1);
    crate::live::info::set_model_info(name, "checkpoint");
    tracing::info!(model = %name, restored = %what, "model restored from its checkpoint");
}

/// The checkpoint of `name`, if there is one that decodes and passes `check`; a refused file is
/// moved aside, logged and counted.
fn load(
    model_dir: &Path,
    name: &str,
    check: impl FnOnce(&SavedModel) -> Result<(), CheckpointError>,
) -> Option<SavedModel> {
    let path = model_path(model_dir, name);
    let folder = path.parent()?;
    let temp = folder.join(TEMP_FILE);
    if temp.exists() {
        // A write the previous process did not finish: never a model, so removed.
        match std::fs::remove_file(&temp) {
            Ok(()) => {
                tracing::info!(path = %temp.display(), "removed an unfinished checkpoint write")
            }
            Err(e) => {
                tracing::warn!(path = %temp.display(), error = %e, "cannot remove an unfinished checkpoint write")
            }
        }
    }
    if !path.exists() {
        tracing::info!(model = %name, path = %path.display(), "no checkpoint: the model trains anew");
        return None;
    }
    let error = match read(&path).and_then(|saved| check(&saved).map(|()| saved)) {
        Ok(saved) => return Some(saved),
        Err(e) => e,
    };
    counter!("canopy_checkpoint_restores_total", "model" => name.to_owned(), "result" => error.kind())
        .increment(1);
    if let CheckpointError::Io { .. } = error {
        tracing::error!(model = %name, path = %path.display(), reason = %error, "cannot read the checkpoint: the model trains anew");
        return None;
    }
    match move_aside(&path, error.aside_label()) {
        Ok(aside) => tracing::warn!(
            model = %name,
            path = %path.display(),
            moved_to = %aside.display(),
            reason = %error,
            "checkpoint refused and moved aside: the model trains anew"
        ),
        Err(e) => tracing::error!(
            model = %name,
            path = %path.display(),
            reason = %error,
            error = %e,
            "checkpoint refused and cannot be moved aside: the model trains anew"
        ),
    }
    None
}

fn mismatch(
    what: &str,
    file: impl std::fmt::Debug,
    config: impl std::fmt::Debug,
) -> CheckpointError {
    CheckpointError::Mismatch(format!(
        "{what} {file:?} in the file, {config:?} in the config"
    ))
}

fn human_ms(ms: i64) -> String {
    humantime::format_duration(std::time::Duration::from_millis(ms.max(0) as u64)).to_string()
}

/// The checks both kinds share: the step, and that each feature, position by position, has the
/// same expression in the file as in the config.
fn check_features(
    saved: &SavedModel,
    features: &[String],
    expressions: &[String],
    step_ms: i64,
) -> Result<(), CheckpointError> {
    if saved.step_ms != step_ms {
        return Err(CheckpointError::Mismatch(format!(
            "step {} in the file, {} in the config",
            human_ms(saved.step_ms),
            human_ms(step_ms)
        )));
    }
    if saved.features.len() != features.len() {
        return Err(mismatch("features", &saved.features, features));
    }
    if saved.expressions.is_empty() {
        return Err(CheckpointError::Mismatch(
            "written before expressions were recorded: what its features meant is unknown".into(),
        ));
    }
    let pairs = saved.features.iter().zip(&saved.expressions);
    for ((old_name, old), (name, new)) in pairs.zip(features.iter().zip(expressions)) {
        if canonical(old) != canonical(new) {
            let renamed = if old_name == name {
                String::new()
            } else {
                format!(" (`{old_name}` in the file)")
            };
            return Err(CheckpointError::Mismatch(format!(
                "feature `{name}`{renamed} changed its expression from `{old}` to `{new}`"
            )));
        }
    }
    Ok(())
}

fn check_detector(saved: &SavedModel, d: &Detector) -> Result<(), CheckpointError> {
    if saved.kind() != "isolation_forest" {
        return Err(mismatch("kind", saved.kind(), "isolation_forest"));
    }
    let spec = d.spec();
    check_features(saved, &spec.features, &spec.expressions, spec.step_ms)
}

fn check_forecaster(saved: &SavedModel, f: &Forecaster) -> Result<(), CheckpointError> {
    let spec = f.spec();
    let SavedData::Forecaster {
        targets,
        lookback,
        horizon,
        ..
    } = &saved.data
    else {
        return Err(mismatch("kind", saved.kind(), "random_forest"));
    };
    check_features(saved, &spec.features, &spec.expressions, spec.step_ms)?;
    // by position, so that renaming a feature does not make its target another one
    let positions = |targets: &[String], features: &[String]| -> Vec<Option<usize>> {
        targets
            .iter()
            .map(|t| features.iter().position(|f| f == t))
            .collect()
    };
    if positions(targets, &saved.features) != positions(&spec.targets, &spec.features) {
        return Err(mismatch("targets", targets, &spec.targets));
    }
    if (*lookback, *horizon) != (spec.window.lookback, spec.window.horizon) {
        return Err(mismatch(
            "(lookback, horizon)",
            (lookback, horizon),
            (spec.window.lookback, spec.window.horizon),
        ));
    }
    Ok(())
}
