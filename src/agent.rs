//! The running agent: builds the pipeline from a [`Config`] and runs its tasks until shutdown.
//!
//! Tasks and who owns what:
//! - the HTTP server (tokio tasks, one per connection) owns nothing; it reaches the store through
//!   the [`Ingestor`] behind an `Arc`;
//! - the sweeper (one tokio task) evicts samples past retention and series gone stale, every
//!   `SWEEP_EVERY`; it takes each store shard's lock briefly, one shard at a time.
//!
//! Shutdown has one path: SIGTERM or SIGINT → the server stops accepting and drains in-flight
//! requests (axum's graceful shutdown) → the sweeper is stopped → `run` returns.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::ingest::decode::LabelLimits;
use crate::ingest::handler::RemoteWrite;
use crate::ingest::{IngestLimits, Ingestor};
use crate::series::{Prefilter, Selector, SeriesStore, StoreLimits};
use crate::serve::{self, Routes};

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
    #[error("feature `{name}`: {reason}")]
    Feature { name: String, reason: String },
}

/// The ingest side of the pipeline, built from the config.
pub struct Pipeline {
    pub store: Arc<SeriesStore>,
    pub ingestor: Arc<Ingestor>,
}

impl Pipeline {
    pub fn new(config: &Config) -> Result<Pipeline, AgentError> {
        let mut selectors = Vec::new();
        for (name, expr) in &config.features {
            let parsed =
                promql_parser::parser::parse(expr).map_err(|reason| AgentError::Feature {
                    name: name.clone(),
                    reason,
                })?;
            selectors.extend(Selector::all_in(&parsed));
        }
        let store = Arc::new(SeriesStore::new(StoreLimits {
            max_series: config.limits.max_series,
            retention_ms: config.limits.retention.as_millis() as i64,
        }));
        let l = &config.limits;
        let ingestor = Arc::new(Ingestor::new(
            store.clone(),
            Prefilter::new(selectors),
            IngestLimits {
                max_request_bytes: l.max_request_bytes,
                max_decoded_bytes: l.max_decoded_bytes,
                labels: LabelLimits {
                    max_labels: l.max_labels_per_series,
                    max_name_bytes: l.max_label_name_bytes,
                    max_value_bytes: l.max_label_value_bytes,
                },
            },
        ));
        Ok(Pipeline { store, ingestor })
    }
}

/// Runs the agent until SIGTERM or SIGINT.
pub async fn run(config: Config, listen: SocketAddr) -> Result<(), AgentError> {
    let metrics = serve::telemetry::install();
    let pipeline = Pipeline::new(&config)?;
    let (stop_tx, stop_rx) = watch::channel(false);

    let sweeper = tokio::spawn(sweep(pipeline.store.clone(), stop_rx.clone()));

    let routes = Routes {
        remote_write: RemoteWrite::new(
            pipeline.ingestor.clone(),
            config.limits.max_inflight_requests,
        ),
        store: pipeline.store.clone(),
        metrics,
    };
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| AgentError::Listen {
            addr: listen,
            source,
        })?;
    let bound = listener.local_addr().unwrap_or(listen);
    tracing::info!(addr = %bound, features = config.features.len(), models = config.models.len(), "canopy listening");
    axum::serve(listener, serve::router(routes))
        .with_graceful_shutdown(shutdown_signal())
        .await
        .map_err(AgentError::Serve)?;

    tracing::info!("shutting down: server drained");
    let _ = stop_tx.send(true);
    let _ = sweeper.await;
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
