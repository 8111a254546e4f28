//! The HTTP surface: one axum router for remote-write, the read API, KServe serving, health and
//! `/metrics`.
//!
//! Each route's handler lives with the capability it exposes (remote-write in
//! [`crate::ingest::handler`], KServe V1/V2 in [`kserve`]); this module only assembles routes,
//! and owns the process-level endpoints. Unknown paths answer 404 with a JSON error (from
//! [`kserve::router`]), like every other canopy error body.

pub mod api;
pub mod kserve;
pub mod registry;
pub mod telemetry;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;

use crate::features::FeatureSet;
use crate::features::history::FeatureHistory;
use crate::ingest::handler::{RemoteWrite, remote_write};
use crate::series::SeriesStore;

/// Everything the routes read.
#[derive(Clone)]
pub struct Routes {
    pub remote_write: Arc<RemoteWrite>,
    pub store: Arc<SeriesStore>,
    pub history: Arc<FeatureHistory>,
    pub features: FeatureSet,
    /// The models the predict endpoints serve.
    pub registry: registry::Registry,
    pub metrics: PrometheusHandle,
}

pub fn router(r: Routes) -> Router {
    let write = Router::new()
        .route("/api/v1/write", post(remote_write))
        .route("/api/v1/push", post(remote_write))
        .with_state(r.remote_write.clone());
    let read = Router::new()
        .route("/api/v1/series", get(api::series))
        .with_state(r.store.clone())
        .merge(
            Router::new()
                .route("/api/v1/features", get(api::features))
                .route("/api/v1/features/{name}", get(api::feature_history))
                .with_state(api::FeaturesApi {
                    history: r.history.clone(),
                    features: r.features.clone(),
                }),
        );
    // The KServe router brings the JSON 404 for unknown paths, for every route here.
    let kserve = kserve::router_with_body_limit(
        r.registry.clone(),
        r.remote_write.ingestor.limits().max_request_bytes,
    );
    kserve
        .merge(write)
        .merge(read)
        .merge(process_routes(r.metrics))
}

/// The serve-only runtime's router (`canopy serve`): the KServe routes over checkpoints loaded
/// read-only, and the process endpoints; no ingest, no features.
pub fn serve_only_router(registry: registry::Registry, metrics: PrometheusHandle) -> Router {
    kserve::router(registry).merge(process_routes(metrics))
}

fn process_routes(metrics: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(render_metrics))
        .route("/-/healthy", get(|| async { "canopy is healthy\n" }))
        // The pod's readiness: the config is loaded and the server listens, which is all a
        // request needs. It never waits for a model (model readiness is the KServe endpoints'),
        // so a node whose models still wait for its remote-write is never kept out of the
        // Service that would bring that remote-write.
        .route("/-/ready", get(|| async { "canopy is ready\n" }))
        .with_state(metrics)
}

/// The recorder's metrics, then the per-entity series (which leave when their entity goes
/// stale, see [`crate::entity_metrics`]).
async fn render_metrics(State(metrics): State<PrometheusHandle>) -> Response {
    let mut body = metrics.render();
    crate::entity_metrics::global().render(&mut body, telemetry::help_of);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
        .into_response()
}
