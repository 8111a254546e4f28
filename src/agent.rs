//! The running agent: builds the [`Pipeline`] from a [`Config`] and runs its tasks until shutdown.
//!
//! Tasks and who owns what:
//! - the HTTP server (tokio tasks, one per connection) owns nothing; it reaches the store through
//!   the [`Ingestor`](crate::ingest::Ingestor) behind an `Arc`;
//! - the sweeper (one tokio task) evicts samples past retention and series gone stale, every
//!   `SWEEP_EVERY`; it takes each store shard's lock briefly, one shard at a time;
//! - the evaluation loop (one OS thread, because a step's evaluation is CPU work that must not
//!   hold up the async workers serving ingest) owns the [`FeatureEngine`]: every tick it
//!   evaluates the steps the watermark has made due and records them in the shared
//!   [`FeatureHistory`], which HTTP handlers read, then hands each step to the models' live
//!   runtimes ([`Detector`], [`Forecaster`]), which score and forecast on this thread and train
//!   on their own; each tick it also lets the [`CheckpointSchedule`] hand snapshots of changed or
//!   due models to the checkpoint writer thread, which does the disk work;
//! - before any of this starts, each model is restored from its checkpoint when it has a valid
//!   one ([`restore_models`]).
//!
//! Shutdown has one path: SIGTERM or SIGINT → the server stops accepting and drains in-flight
//! requests (axum's graceful shutdown) → the sweeper and the evaluation loop are told to stop and
//! joined → the evaluation thread's last act is the final checkpoint of every model, written
//! before it returns → `run` returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::checkpoint::restore::restore_models;
use crate::checkpoint::writer::{CheckpointSchedule, CheckpointWriter};
use crate::config::Config;
use crate::features::FeatureEngine;
use crate::features::history::FeatureHistory;
use crate::ingest::handler::RemoteWrite;
use crate::live::TrainingMode;
use crate::live::detector::Detector;
use crate::live::forecaster::Forecaster;
use crate::pipeline::{Pipeline, PipelineError};
use crate::series::SeriesStore;
use crate::serve::registry::Registry;
use crate::serve::reload::{self, CheckpointFollower, RELOAD_EVERY};
use crate::serve::{self, Routes, Security};

const SWEEP_EVERY: Duration = Duration::from_secs(15);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the HTTP server failed: {0}")]
    Serve(std::io::Error),
    #[error(transparent)]
    Security(#[from] crate::serve::SecurityError),
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(
        "no checkpoint of model `{name}` in {dir}: expected {dir}/model.ckpt or {dir}/MODEL/model.ckpt"
    )]
    NoModel { dir: String, name: String },
    #[error("cannot start the evaluation thread: {0}")]
    Thread(std::io::Error),
    #[error("cannot start the checkpoint follower thread: {0}")]
    FollowerThread(std::io::Error),
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config, listen: SocketAddr) -> Result<(), AgentError> {
    let security = Security::load(&config.server)?;
    let metrics = serve::telemetry::install();
    let pipeline = Pipeline::new(&config)?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let sweeper = tokio::spawn(sweep(pipeline.store.clone(), stop_rx.clone()));
    let mut detectors = pipeline.detectors(&config, TrainingMode::Background)?;
    let mut forecasters = pipeline.forecasters(&config, TrainingMode::Background)?;
    restore_models(&config.model_dir, &mut detectors, &mut forecasters);
    let checkpoints = CheckpointSchedule::new(
        CheckpointWriter::spawn(
            config.model_dir.clone(),
            detectors.len() + forecasters.len(),
        )
        .map_err(AgentError::Thread)?,
        config.checkpoint.interval,
        &detectors,
        &forecasters,
    );
    let registry = Registry::live(&detectors, &forecasters);
    let evaluation = {
        let (engine, store, history, stop, config) = (
            pipeline.engine(&config),
            pipeline.store.clone(),
            pipeline.history.clone(),
            stop_rx.clone(),
            config.clone(),
        );
        let (mut detectors, mut forecasters) = (detectors, forecasters);
        std::thread::Builder::new()
            .name("evaluation".into())
            .spawn(move || {
                // First training from the configured source for every model a checkpoint did not
                // restore (restored ones are skipped), on this thread so that the server binds
                // and answers meanwhile; readiness follows the published forests. Samples
                // received meanwhile wait in the store for the first evaluation.
                crate::live::seed::initial_training(&config, &mut detectors, &mut forecasters);
                evaluation_loop(
                    engine,
                    Models {
                        detectors,
                        forecasters,
                        checkpoints,
                    },
                    &store,
                    &history,
                    stop,
                )
            })
            .map_err(AgentError::Thread)?
    };

    let routes = Routes {
        remote_write: RemoteWrite::new(
            pipeline.ingestor.clone(),
            config.limits.max_inflight_requests,
            config.limits.max_inflight_bytes,
        ),
        store: pipeline.store.clone(),
        history: pipeline.history.clone(),
        features: pipeline.features.clone(),
        registry,
        metrics,
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: listen,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!(addr = %bound, server = %security.describe(), features = config.features.len(), models = config.models.len(), "canopy listening");
    serve::serve(listener, serve::router(routes), security, shutdown_signal())
        .await
        .map_err(AgentError::Serve)?;

    tracing::info!("shutting down: server drained");
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
    if evaluation.join().is_err() {
        tracing::error!("the evaluation thread panicked");
    }
    tracing::info!("canopy stopped");
    Ok(())
}

/// Serves checkpoints read-only, as a KServe custom runtime does (`canopy serve`): the models in
/// `model_dir` (a model file directly in it, or one subfolder per model), named `model_name` when
/// given (a single model file takes that name, as KServe's `--model_name` names it), on the KServe
/// routes, until SIGTERM or SIGINT. Needs no config: each checkpoint carries what shaped its model;
/// `security` is the `[server]` section (from the environment, `CANOPY_SERVER__…`).
///
/// Each served file is followed while the server runs: the checkpoint follower thread polls the
/// files every [`RELOAD_EVERY`] and swaps a valid replacement into the model's `arc-swap` cell
/// (see [`crate::serve::reload`]). It owns nothing the requests wait on; it stops when the
/// server has drained and this function drops the channel it listens on.
pub async fn serve_checkpoints(
    model_dir: &std::path::Path,
    model_name: Option<&str>,
    listen: SocketAddr,
    security: Security,
) -> Result<(), AgentError> {
    let metrics = serve::telemetry::install();
    let (_, mut loaded) = reload::load_registry(model_dir)?;
    if let Some(name) = model_name {
        if loaded.len() == 1 {
            loaded[0].handle.rename(name);
        } else {
            loaded.retain(|l| l.handle.name() == name);
        }
        if loaded.is_empty() {
            return Err(AgentError::NoModel {
                dir: model_dir.display().to_string(),
                name: name.to_owned(),
            });
        }
    }
    let registry = Registry::of(loaded.iter().map(|l| &l.handle));
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: listen,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!(addr = %bound, server = %security.describe(), models = ?registry.names(), dir = %model_dir.display(), "canopy listening");
    let follower = CheckpointFollower::new(loaded);
    let (stop_follower, stop) = std::sync::mpsc::channel::<()>();
    let following = std::thread::Builder::new()
        .name("checkpoint-follower".into())
        .spawn(move || reload::follow(follower, RELOAD_EVERY, stop))
        .map_err(AgentError::FollowerThread)?;
    let served = serve::serve(
        listener,
        serve::serve_only_router(registry, metrics),
        security,
        shutdown_signal(),
    )
    .await;
    drop(stop_follower);
    if following.join().is_err() {
        tracing::error!("the checkpoint follower thread panicked");
    }
    served.map_err(AgentError::Serve)?;
    tracing::info!("canopy stopped");
    Ok(())
}

/// Evicts expired samples and stale series until told to stop.
async fn sweep(store: Arc<SeriesStore>, mut stop: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let removed = store.evict();
                if removed > 0 {
                    metrics::counter!("canopy_series_evicted_total").increment(removed as u64);
                    tracing::debug!(removed, "evicted stale series");
                }
                metrics::gauge!("canopy_active_series").set(store.active_series() as f64);
                metrics::gauge!("canopy_samples_held").set(store.sample_count() as f64);
            }
            _ = stop.changed() => return,
        }
    }
}

/// The models the evaluation thread owns, and the schedule of their checkpoints.
struct Models {
    detectors: Vec<Detector>,
    forecasters: Vec<Forecaster>,
    checkpoints: CheckpointSchedule,
}

/// Evaluates due steps until told to stop, then writes the final checkpoints. Ticks at a quarter
/// of the step (at most a second), so a step is evaluated soon after the watermark passes it.
fn evaluation_loop(
    mut engine: FeatureEngine,
    models: Models,
    store: &SeriesStore,
    history: &FeatureHistory,
    stop: watch::Receiver<bool>,
) {
    let Models {
        mut detectors,
        mut forecasters,
        mut checkpoints,
    } = models;
    let tick = Duration::from_millis((engine.stepper().step_ms() / 4).clamp(10, 1000) as u64);
    while !*stop.borrow() {
        let started = std::time::Instant::now();
        let steps = engine.advance(store, history);
        for step in &steps {
            for d in &mut detectors {
                d.on_step(step);
            }
            for f in &mut forecasters {
                f.on_step(step);
            }
        }
        if let Some(last) = steps.last() {
            metrics::histogram!("canopy_evaluation_seconds")
                .record(started.elapsed().as_secs_f64() / steps.len() as f64);
            metrics::counter!("canopy_evaluation_steps_total").increment(steps.len() as u64);
            metrics::gauge!("canopy_evaluation_last_step_timestamp_seconds")
                .set(last.t_ms as f64 / 1000.0);
        }
        if let Some(last) = engine.stepper().last() {
            let now_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as i64);
            metrics::gauge!("canopy_evaluation_lag_seconds").set((now_ms - last) as f64 / 1000.0);
        }
        checkpoints.tick(&detectors, &forecasters);
        std::thread::sleep(tick);
    }
    tracing::info!("writing the final checkpoints");
    checkpoints.finish(&detectors, &forecasters);
}

/// Resolves on the first SIGTERM or SIGINT.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "cannot listen for SIGINT");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received"),
        _ = terminate => tracing::info!("SIGTERM received"),
    }
}
