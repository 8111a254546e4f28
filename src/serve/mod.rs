//! The HTTP surface: one axum router for remote-write, the read API, KServe serving, health and
//! `/metrics`, and how it is served ([`serve`]: HTTP or HTTPS, with or without a bearer token).
//!
//! Each route's handler lives with the capability it exposes (remote-write in
//! [`crate::ingest::handler`], KServe V1/V2 in [`kserve`]); this module only assembles routes,
//! and owns the process-level endpoints. Unknown paths answer 404 with a JSON error (from
//! [`kserve::router`]), like every other canopy error body. Who may call which route is decided
//! in [`auth`], the TLS side in [`tls`]; both are off unless `[server]` configures them.

pub(crate) mod api;
pub(crate) mod auth;
pub mod kserve;
pub mod registry;
pub mod reload;
pub mod telemetry;
pub(crate) mod tls;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;

use crate::config::ServerConfig;
use crate::features::FeatureSet;
use crate::features::history::FeatureHistory;
use crate::ingest::handler::{RemoteWrite, remote_write};
use crate::series::SeriesStore;

/// Everything the routes read.
#[derive(Clone)]
pub(crate) struct Routes {
    pub(crate) remote_write: Arc<RemoteWrite>,
    pub(crate) store: Arc<SeriesStore>,
    pub(crate) history: Arc<FeatureHistory>,
    pub(crate) features: FeatureSet,
    /// The models the predict endpoints serve.
    pub(crate) registry: registry::Registry,
    pub(crate) metrics: PrometheusHandle,
}

pub(crate) fn router(r: Routes) -> Router {
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
pub(crate) fn serve_only_router(registry: registry::Registry, metrics: PrometheusHandle) -> Router {
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

/// Who may use the server, and over what (`[server]`). `canopy run`, `canopy serve` and
/// `check-config` all load it, so that a file that cannot be used is found before the server
/// starts rather than at the first request.
#[derive(Clone, Debug, Default)]
pub struct Security {
    access: Option<auth::Access>,
    tls: Option<(Arc<tls::Certificates>, Arc<rustls::ServerConfig>)>,
}

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error(transparent)]
    Token(#[from] auth::TokenError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
}

/// How often the token and certificate files are re-read.
const REREAD_EVERY: Duration = Duration::from_secs(1);

impl Security {
    /// Reads the token and certificate files `server` names.
    pub fn load(server: &ServerConfig) -> Result<Security, SecurityError> {
        let access = match &server.bearer_token_file {
            Some(path) => Some(auth::Access {
                token: Arc::new(auth::TokenFile::load(path)?),
                metrics_open: server.metrics_open,
            }),
            None => None,
        };
        let tls = match (&server.tls_cert_file, &server.tls_key_file) {
            (Some(cert), Some(key)) => {
                let certificates = Arc::new(tls::Certificates::load(cert, key)?);
                let config = certificates.server_config()?;
                Some((certificates, config))
            }
            _ => None,
        };
        Ok(Security { access, tls })
    }

    /// One line for logs and `check-config`: `http` or `https`, and who may call.
    pub fn describe(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        match &self.access {
            None => format!("{scheme}, no authentication"),
            Some(a) if a.metrics_open => {
                format!("{scheme}, bearer token required (not for the probes and /metrics)")
            }
            Some(_) => format!("{scheme}, bearer token required (not for the probes)"),
        }
    }

    /// Re-reads the files (blocking file reads: run off the async workers).
    fn reread(&self) {
        if let Some(access) = &self.access {
            access.token.refresh();
        }
        if let Some((certificates, _)) = &self.tls {
            certificates.refresh();
        }
    }
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains: over HTTPS when
/// certificates are configured, behind the bearer token when one is, re-reading their files
/// every second meanwhile (on a blocking thread, so a slow volume never stalls a worker).
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    security: Security,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = match &security.access {
        Some(access) => router.layer(axum::middleware::from_fn_with_state(
            access.clone(),
            auth::require_token,
        )),
        None => router,
    };
    let watcher = (security.access.is_some() || security.tls.is_some()).then(|| {
        let security = security.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REREAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let security = security.clone();
                let _ = tokio::task::spawn_blocking(move || security.reread()).await;
            }
        })
    });
    let served = match &security.tls {
        Some((_, config)) => {
            axum::serve(tls::TlsListener::new(listener, config.clone())?, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
        None => {
            axum::serve(listener, router)
                .with_graceful_shutdown(shutdown)
                .await
        }
    };
    if let Some(watcher) = watcher {
        watcher.abort();
    }
    served
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
