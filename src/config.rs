//! The configuration: the embedded default, a `--config` TOML file over it, environment
//! overrides over both, and validation that names the key and what is wrong.
//!
//! Merging rules (a contract that scripts and manifests rely on):
//! - the file overrides the default key by key, except `[features]` and `[models]`: a file that
//!   has either table replaces the default one whole, and only the models it lists run;
//! - then the environment: the replaced platform's `DATA_SOURCE`, `PROMETHEUS_URL`,
//!   `TRAINING_DAYS` and `ANOMALY_RATE`, `CANOPY_LISTEN` and `CANOPY_MODEL_DIR`, and
//!   `CANOPY_SECTION__KEY` for any section key (`CANOPY_LIMITS__MAX_SERIES=50000`), the value
//!   read as TOML (falling back to a string); other `CANOPY_*` variables, such as the ones
//!   Kubernetes injects for a Service named canopy, are left alone;
//! - `PORT` and `--listen` are applied by the command line, which knows which is stronger.
//!
//! Unknown keys are errors that name the key. This module does no I/O beyond reading the file.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The embedded default configuration, also printed by the README.
pub(crate) const DEFAULT_TOML: &str = include_str!("default_config.toml");

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    /// `detail` is the parser's message, then where (`--> FILE:LINE:COLUMN`) and the line with
    /// the place marked, over several lines as compilers print them.
    #[error("{origin} is not valid TOML: {detail}")]
    Syntax { origin: String, detail: String },
    #[error("config key `{key}`: {reason}")]
    Invalid { key: String, reason: String },
}

fn invalid(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.into(),
        reason: reason.into(),
    }
}

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub model_dir: PathBuf,
    pub(crate) limits: Limits,
    /// Feature name to PromQL expression, in name order.
    pub features: BTreeMap<String, String>,
    pub models: BTreeMap<String, ModelConfig>,
    pub(crate) evaluation: Evaluation,
    pub(crate) checkpoint: CheckpointConfig,
    pub(crate) source: SourceConfig,
    pub server: ServerConfig,
}

/// Who may use the HTTP server, and over what: all off by default. Only the paths and their
/// shape are checked here; the files are read by [`crate::serve::Security::load`], at start and
/// by `check-config`, and re-read when they change.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// A file holding the token every request but the probes must send as
    /// `Authorization: Bearer <token>`.
    #[serde(default)]
    pub(crate) bearer_token_file: Option<PathBuf>,
    /// `/metrics` answers without the token.
    #[serde(default)]
    pub(crate) metrics_open: bool,
    /// PEM certificate chain (leaf first) and private key: HTTPS instead of HTTP.
    #[serde(default)]
    pub(crate) tls_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub(crate) tls_key_file: Option<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Limits {
    pub(crate) max_request_bytes: usize,
    pub(crate) max_decoded_bytes: usize,
    pub(crate) max_inflight_requests: usize,
    /// Bytes all in-flight remote-write requests may hold at once: each compressed body, its
    /// decoded body, and the labels, samples and series decoded from it, charged as they grow.
    pub(crate) max_inflight_bytes: usize,
    pub(crate) max_series: usize,
    pub(crate) max_labels_per_series: usize,
    pub(crate) max_label_name_bytes: usize,
    pub(crate) max_label_value_bytes: usize,
    #[serde(deserialize_with = "duration")]
    pub(crate) retention: Duration,
    /// How far ahead of the wall clock a received sample may be; later ones are dropped.
    #[serde(deserialize_with = "duration")]
    pub(crate) max_future: Duration,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Evaluation {
    #[serde(deserialize_with = "duration")]
    pub(crate) step: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) lateness: Duration,
    #[serde(deserialize_with = "duration")]
    pub(crate) history: Duration,
    /// Steps of a model (or of the evaluation, for feature values) after which an entity that
    /// gave no result leaves `/metrics`.
    pub(crate) stale_steps: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CheckpointConfig {
    #[serde(deserialize_with = "duration")]
    pub(crate) interval: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum DataSource {
    Synthetic,
    Prometheus,
    Hybrid,
    /// No first training: models learn from the stream alone, as `replay` does, and are ready
    /// once it has given them enough vectors.
    None,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SourceConfig {
    pub(crate) data_source: DataSource,
    pub(crate) prometheus_url: String,
    pub(crate) anomaly_rate: f64,
    /// `TRAINING_DAYS`: when set, overrides every model's `training_days`.
    #[serde(default)]
    pub(crate) training_days: Option<u32>,
    /// A file holding a bearer token sent to Prometheus (a service account token).
    #[serde(default)]
    pub(crate) bearer_token_file: Option<PathBuf>,
    /// Basic auth user for Prometheus; the password is read from `basic_auth_password_file`.
    #[serde(default)]
    pub(crate) basic_auth_user: Option<String>,
    #[serde(default)]
    pub(crate) basic_auth_password_file: Option<PathBuf>,
    /// PEM certificates to trust for an `https` Prometheus, instead of the Mozilla roots.
    #[serde(default)]
    pub(crate) ca_file: Option<PathBuf>,
    /// The timeout of one `query_range` request.
    #[serde(deserialize_with = "duration")]
    pub(crate) query_timeout: Duration,
    /// Retries of a failed `query_range` request (with doubling backoff from 0.5s).
    pub(crate) query_retries: u32,
}

/// One model's configuration, resolved with its kind's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub features: Vec<String>,
    pub(crate) step: Duration,
    pub seed: u64,
    pub(crate) training_days: u32,
    pub(crate) retrain_interval: Duration,
    pub kind: ModelKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelKind {
    IsolationForest(IsolationForestConfig),
    RandomForest(RandomForestConfig),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Contamination {
    Auto,
    Fraction(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForestConfig {
    pub(crate) n_estimators: usize,
    pub(crate) max_samples: usize,
    pub(crate) max_features: f64,
    pub(crate) contamination: Contamination,
    pub(crate) replace_fraction: f64,
    pub(crate) reservoir_size: usize,
    pub(crate) gate_anomalies: bool,
    /// The likelihood at or above which `canopy_anomaly` is 1, in (0, 1).
    pub(crate) threshold: f64,
    /// Steps of surprise averaged into the likelihood.
    pub(crate) likelihood_window: usize,
    /// Event time after an alert during which the surprise is halved (0: never).
    pub(crate) suppress: Duration,
    /// The period after which an entity's surprising steps recur (0: not looked for); a step
    /// about one period after a surprising one has its surprise halved.
    pub(crate) recurrence: Duration,
    /// How far from exactly one period earlier a surprising step still counts.
    pub(crate) recurrence_tolerance: Duration,
    /// The time a step's rarity is read per (None: per step).
    pub(crate) rarity_unit: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RandomForestConfig {
    pub(crate) target: Vec<String>,
    pub(crate) lookback: usize,
    pub(crate) horizon: usize,
    pub(crate) n_estimators: usize,
    pub(crate) max_depth: Option<usize>,
    pub(crate) min_samples_split: usize,
    pub(crate) min_samples_leaf: usize,
    pub(crate) max_features: f64,
    pub(crate) bootstrap: bool,
}

/// The most steps a detector's likelihood may average: bounds each entity's state.
pub(crate) const MAX_LIKELIHOOD_WINDOW: usize = 64;

/// The model table as written: every key optional, resolved against the kind's defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    kind: String,
    features: Vec<String>,
    #[serde(default, deserialize_with = "opt_duration")]
    step: Option<Duration>,
    seed: Option<u64>,
    training_days: Option<u32>,
    #[serde(default, deserialize_with = "opt_duration")]
    retrain_interval: Option<Duration>,
    n_estimators: Option<usize>,
    max_samples: Option<usize>,
    max_features: Option<f64>,
    contamination: Option<toml::Value>,
    replace_fraction: Option<f64>,
    reservoir_size: Option<usize>,
    gate_anomalies: Option<bool>,
    threshold: Option<f64>,
    likelihood_window: Option<usize>,
    #[serde(default, deserialize_with = "opt_duration")]
    suppress: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    recurrence: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    recurrence_tolerance: Option<Duration>,
    #[serde(default, deserialize_with = "opt_duration")]
    rarity_unit: Option<Duration>,
    target: Option<Vec<String>>,
    lookback: Option<usize>,
    horizon: Option<usize>,
    max_depth: Option<usize>,
    min_samples_split: Option<usize>,
    min_samples_leaf: Option<usize>,
    bootstrap: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: String,
    model_dir: PathBuf,
    limits: Limits,
    features: BTreeMap<String, String>,
    models: BTreeMap<String, RawModel>,
    evaluation: Evaluation,
    checkpoint: CheckpointConfig,
    source: SourceConfig,
    #[serde(default)]
    server: ServerConfig,
}

/// A listening address: `HOST:PORT` with an IP host (`0.0.0.0:8080`, `127.0.0.1:9000`,
/// `[::]:8080`), or `:PORT` for every IPv4 interface (`0.0.0.0:PORT`), as Go servers and the
/// README write it. `--listen`, `CANOPY_LISTEN` and the config's `listen` all read it.
pub fn parse_listen(s: &str) -> Result<SocketAddr, String> {
    let s = s.trim();
    let parsed = match s.strip_prefix(':') {
        Some(port) => port
            .parse::<u16>()
            .ok()
            .map(|p| SocketAddr::from(([0, 0, 0, 0], p))),
        None => s.parse().ok(),
    };
    parsed.ok_or_else(|| {
        format!("`{s}` is not an address like 0.0.0.0:8080, 127.0.0.1:8080, [::]:8080 or :8080")
    })
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s)
        .map_err(|e| format!("`{s}` is not a duration like \"30s\" or \"5m\": {e}"))
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

fn opt_duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

fn parse_table(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    text.parse::<toml::Table>()
        .map_err(|e| ConfigError::Syntax {
            origin: origin.to_owned(),
            detail: syntax_detail(&e, origin),
        })
}

/// The toml crate's message, then `--> FILE:LINE:COLUMN` and its snippet (the offending line
/// with the place marked) as it renders them after its `TOML parse error at line L, column C`
/// header; the crate's whole rendering if it has no such header.
fn syntax_detail(e: &toml::de::Error, origin: &str) -> String {
    let rendered = e.to_string();
    let mut lines = rendered.lines();
    let position = lines
        .next()
        .and_then(|l| l.strip_prefix("TOML parse error at line "))
        .and_then(|at| at.split_once(", column "));
    let Some((line, column)) = position else {
        return format!("\n{}", rendered.trim_end());
    };
    // the snippet: a gutter line, the numbered line, the marker line
    let snippet: Vec<&str> = lines.take(3).collect();
    let gutter = line.len();
    let mut out = format!(
        "{}\n{:gutter$}--> {origin}:{line}:{column}",
        e.message().trim_end(),
        ""
    );
    for l in snippet {
        out.push('\n');
        out.push_str(l.trim_end());
    }
    out
}

/// Overlays `file` onto `base`: key by key, recursively, but `features` and `models` whole.
fn merge(base: &mut toml::Table, file: toml::Table, top: bool) {
    for (key, value) in file {
        let whole = top && (key == "features" || key == "models");
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(f)) if !whole => merge(b, f, false),
            (_, v) => {
                base.insert(key, v);
            }
        }
    }
}

/// Which of the default's whole-replaced tables a `--config` file replaced, to explain errors
/// that come from it.
#[derive(Default)]
struct Replaced {
    origin: String,
    features: bool,
    models: bool,
}

impl Replaced {
    /// Adds a hint to an error a replaced `[models]` or `[features]` table explains: a model
    /// without `kind` or `features` (usually one key of a default model overridden, the rest
    /// gone with the default table), or a model using a feature the file's `[features]` no longer
    /// defines.
    fn hint(&self, e: ConfigError) -> ConfigError {
        let ConfigError::Invalid { key, reason } = e else {
            return e;
        };
        let origin = &self.origin;
        let hint = if let Some(model) = key.strip_prefix("models.")
            && !model.contains('.')
            && self.models
            && let Some(field) = reason
                .strip_prefix("missing field `")
                .and_then(|r| r.split('`').next())
        {
            Some(format!(
                "{origin} has a [models] table, which replaces the default's whole: each model in \
                 it needs its own `kind` and `features` (`{model}` has no `{field}`), and only the \
                 models it lists run. To change one key of a default model, copy the model's whole \
                 table from the default config (src/default_config.toml) into {origin} and edit it."
            ))
        } else if key.starts_with("models.")
            && key.ends_with(".features")
            && self.features
            && let Some(feature) = reason
                .strip_prefix('`')
                .and_then(|r| r.strip_suffix("` is not defined in [features]"))
        {
            let default = toml::from_str::<toml::Table>(DEFAULT_TOML)
                .ok()
                .and_then(|t| t.get("features")?.get(feature)?.as_str().map(str::to_owned));
            let copy = match default {
                Some(expr) => format!(" The default defines it as {feature} = '{expr}'."),
                None => String::new(),
            };
            Some(format!(
                "{origin} has a [features] table, which replaces the default's whole: it must \
                 define every feature the models use.{copy}"
            ))
        } else {
            None
        };
        match hint {
            Some(hint) => ConfigError::Invalid {
                key,
                reason: format!("{reason}\nhint: {hint}"),
            },
            None => ConfigError::Invalid { key, reason },
        }
    }
}

/// The top-level keys settable from the environment.
const TOP_LEVEL_ENV: [(&str, &str); 2] = [
    ("CANOPY_LISTEN", "listen"),
    ("CANOPY_MODEL_DIR", "model_dir"),
];

/// Applies `CANOPY_LISTEN`, `CANOPY_MODEL_DIR`, `CANOPY_SECTION__KEY` and the platform's
/// environment variables to the merged table.
fn apply_env(table: &mut toml::Table, env: &[(String, String)]) -> Result<(), ConfigError> {
    let platform = [
        ("DATA_SOURCE", "data_source"),
        ("PROMETHEUS_URL", "prometheus_url"),
        ("TRAINING_DAYS", "training_days"),
        ("ANOMALY_RATE", "anomaly_rate"),
    ];
    for (var, value) in env {
        let path: Vec<String> = if let Some((_, key)) = platform.iter().find(|(v, _)| v == var) {
            vec!["source".into(), (*key).into()]
        } else if let Some(key) = TOP_LEVEL_ENV.iter().find(|(v, _)| v == var).map(|(_, k)| k) {
            vec![(*key).into()]
        } else if let Some(rest) = var.strip_prefix("CANOPY_")
            && rest.contains("__")
        {
            rest.split("__").map(str::to_ascii_lowercase).collect()
        } else {
            // Other CANOPY_* variables are not ours: Kubernetes injects CANOPY_SERVICE_HOST,
            // CANOPY_PORT=tcp://... for a Service named canopy, and tools set their own.
            continue;
        };
        if path.len() > 2 || path.iter().any(String::is_empty) {
            return Err(invalid(
                var.clone(),
                "environment overrides name a section key: CANOPY_SECTION__KEY, e.g. CANOPY_LIMITS__MAX_SERIES",
            ));
        }
        if path[0] == "features" || path[0] == "models" {
            return Err(invalid(
                var.clone(),
                "features and models are set in the config file, not the environment",
            ));
        }
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        // The platform's variables are numbers or words; keep words as strings.
        let mut target = &mut *table;
        for section in &path[..path.len() - 1] {
            target = match target
                .entry(section.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            {
                toml::Value::Table(t) => t,
                _ => {
                    return Err(invalid(
                        var.clone(),
                        format!("`{section}` is not a section"),
                    ));
                }
            };
        }
        target.insert(path[path.len() - 1].clone(), parsed);
    }
    Ok(())
}

impl Config {
    /// The embedded default with no file and no environment.
    pub fn default_config() -> Result<Config, ConfigError> {
        Config::from_parts(None, &[])
    }

    /// Loads the configuration as `canopy run` does: default, then `file`, then the process
    /// environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let text = match file {
            Some(path) => Some((
                std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_owned(),
                    source,
                })?,
                path.display().to_string(),
            )),
            None => None,
        };
        let env: Vec<(String, String)> = std::env::vars().collect();
        Config::from_parts(text.as_ref().map(|(t, o)| (t.as_str(), o.as_str())), &env)
    }

    /// Builds a configuration from an optional file text (with its name for messages) and an
    /// environment, without touching the process's own.
    pub fn from_parts(
        file: Option<(&str, &str)>,
        env: &[(String, String)],
    ) -> Result<Config, ConfigError> {
        let mut table = parse_table(DEFAULT_TOML, "the embedded default config")?;
        let mut replaced = Replaced::default();
        if let Some((text, origin)) = file {
            let file = parse_table(text, origin)?;
            replaced = Replaced {
                origin: origin.to_owned(),
                features: file.contains_key("features"),
                models: file.contains_key("models"),
            };
            merge(&mut table, file, true);
        }
        apply_env(&mut table, env)?;
        let raw: RawConfig =
            serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
                let path = e.path().to_string();
                replaced.hint(invalid(
                    if path == "." {
                        "(top level)".into()
                    } else {
                        path
                    },
                    // the message alone: the key is named once, by `invalid`
                    e.into_inner().message().trim_end().to_owned(),
                ))
            })?;
        raw.validate().map_err(|e| replaced.hint(e))
    }
}

impl RawConfig {
    fn validate(self) -> Result<Config, ConfigError> {
        let l = &self.limits;
        for (key, v) in [
            ("limits.max_request_bytes", l.max_request_bytes),
            ("limits.max_decoded_bytes", l.max_decoded_bytes),
            ("limits.max_inflight_requests", l.max_inflight_requests),
            ("limits.max_inflight_bytes", l.max_inflight_bytes),
            ("limits.max_series", l.max_series),
            ("limits.max_labels_per_series", l.max_labels_per_series),
            ("limits.max_label_name_bytes", l.max_label_name_bytes),
            ("limits.max_label_value_bytes", l.max_label_value_bytes),
            (
                "evaluation.stale_steps",
                self.evaluation.stale_steps as usize,
            ),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be greater than 0"));
            }
        }
        let largest = l
            .max_request_bytes
            .saturating_add(l.max_decoded_bytes.saturating_mul(2));
        if l.max_inflight_bytes < largest {
            return Err(invalid(
                "limits.max_inflight_bytes",
                format!(
                    "must hold at least one largest request, max_request_bytes + 2 x max_decoded_bytes = {largest} (it is {}): a larger request would be refused with 503 forever",
                    l.max_inflight_bytes
                ),
            ));
        }
        let listen = parse_listen(&self.listen).map_err(|e| invalid("listen", e))?;
        for (key, d) in [
            ("limits.retention", l.retention),
            ("evaluation.step", self.evaluation.step),
            ("evaluation.history", self.evaluation.history),
            ("checkpoint.interval", self.checkpoint.interval),
        ] {
            if d.is_zero() {
                return Err(invalid(key, "must be longer than 0s"));
            }
        }
        if self.evaluation.step.subsec_millis() != 0
            && self.evaluation.step < Duration::from_secs(1)
        {
            return Err(invalid("evaluation.step", "must be at least 1s"));
        }
        let rate = self.source.anomaly_rate;
        if !(0.0..0.5).contains(&rate) {
            return Err(invalid(
                "source.anomaly_rate",
                format!("{rate} is not in [0, 0.5)"),
            ));
        }
        let src = &self.source;
        if !(src.prometheus_url.starts_with("http://")
            || src.prometheus_url.starts_with("https://"))
        {
            return Err(invalid(
                "source.prometheus_url",
                format!("`{}` is not an http:// or https:// URL", src.prometheus_url),
            ));
        }
        if src.bearer_token_file.is_some() && src.basic_auth_user.is_some() {
            return Err(invalid(
                "source.bearer_token_file",
                "use either bearer_token_file or basic_auth_user, not both",
            ));
        }
        if src.basic_auth_password_file.is_some() && src.basic_auth_user.is_none() {
            return Err(invalid(
                "source.basic_auth_password_file",
                "needs basic_auth_user",
            ));
        }
        if src.query_timeout.is_zero() {
            return Err(invalid("source.query_timeout", "must be longer than 0s"));
        }
        self.server.validate()?;
        for (name, expr) in &self.features {
            if let Err(e) = crate::promql::parse_expr(expr) {
                return Err(invalid(
                    format!("features.{name}"),
                    format!("`{expr}` does not parse: {e}"),
                ));
            }
        }
        let mut models = BTreeMap::new();
        for (name, raw) in self.models {
            let m = raw.resolve(
                &name,
                &self.features,
                self.evaluation.step,
                self.source.training_days,
            )?;
            models.insert(name, m);
        }
        if models.is_empty() {
            return Err(invalid("models", "at least one model must be configured"));
        }
        Ok(Config {
            listen,
            model_dir: self.model_dir,
            limits: self.limits,
            features: self.features,
            models,
            evaluation: self.evaluation,
            checkpoint: self.checkpoint,
            source: self.source,
            server: self.server,
        })
    }
}

impl ServerConfig {
    /// The `[server]` section from the environment alone (`CANOPY_SERVER__KEY`), for
    /// `canopy serve`, which reads no config file.
    pub fn from_env(env: &[(String, String)]) -> Result<ServerConfig, ConfigError> {
        let ours: Vec<(String, String)> = env
            .iter()
            .filter(|(var, _)| var.starts_with("CANOPY_SERVER__"))
            .cloned()
            .collect();
        let mut table = toml::Table::new();
        apply_env(&mut table, &ours)?;
        let server: ServerConfig = match table.remove("server") {
            Some(section) => serde_path_to_error::deserialize(section).map_err(|e| {
                let key = match e.path().to_string().as_str() {
                    "." => "server".to_owned(),
                    path => format!("server.{path}"),
                };
                invalid(key, e.into_inner().message().trim_end().to_owned())
            })?,
            None => ServerConfig::default(),
        };
        server.validate()?;
        Ok(server)
    }

    /// Both TLS files or neither; no empty path.
    fn validate(&self) -> Result<(), ConfigError> {
        for (key, path) in [
            ("server.bearer_token_file", &self.bearer_token_file),
            ("server.tls_cert_file", &self.tls_cert_file),
            ("server.tls_key_file", &self.tls_key_file),
        ] {
            if path.as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                return Err(invalid(key, "is empty: name a file, or leave the key out"));
            }
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(invalid(
                    "server.tls_key_file",
                    "is missing: tls_cert_file is set, and HTTPS needs both the certificate and its key",
                ));
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "server.tls_cert_file",
                    "is missing: tls_key_file is set, and HTTPS needs both the certificate and its key",
                ));
            }
            _ => {}
        }
        Ok(())
    }
}

impl RawModel {
    fn resolve(
        self,
        name: &str,
        features: &BTreeMap<String, String>,
        eval_step: Duration,
        training_days_override: Option<u32>,
    ) -> Result<ModelConfig, ConfigError> {
        let key = |k: &str| format!("models.{name}.{k}");
        if self.features.is_empty() {
            return Err(invalid(key("features"), "must name at least one feature"));
        }
        for f in &self.features {
            if !features.contains_key(f) {
                return Err(invalid(
                    key("features"),
                    format!("`{f}` is not defined in [features]"),
                ));
            }
        }
        let step = self.step.unwrap_or(eval_step);
        if step.is_zero() || step.as_millis() % eval_step.as_millis() != 0 {
            return Err(invalid(
                key("step"),
                format!(
                    "{} is not a multiple of evaluation.step ({})",
                    humantime::format_duration(step),
                    humantime::format_duration(eval_step)
                ),
            ));
        }
        let only = |present: bool, k: &str, kind: &str| {
            if present {
                Err(invalid(
                    key(k),
                    format!("applies only to kind = \"{kind}\""),
                ))
            } else {
                Ok(())
            }
        };
        let fraction = |v: f64, k: &str| {
            if v > 0.0 && v <= 1.0 {
                Ok(v)
            } else {
                Err(invalid(key(k), format!("{v} is not in (0, 1]")))
            }
        };
        let positive = |v: usize, k: &str| {
            if v > 0 {
                Ok(v)
            } else {
                Err(invalid(key(k), "must be greater than 0"))
            }
        };
        let (kind, default_days) = match self.kind.as_str() {
            "isolation_forest" => {
                for (present, k) in [
                    (self.target.is_some(), "target"),
                    (self.lookback.is_some(), "lookback"),
                    (self.horizon.is_some(), "horizon"),
                    (self.max_depth.is_some(), "max_depth"),
                    (self.min_samples_split.is_some(), "min_samples_split"),
                    (self.min_samples_leaf.is_some(), "min_samples_leaf"),
                    (self.bootstrap.is_some(), "bootstrap"),
                ] {
                    only(present, k, "random_forest")?;
                }
                let contamination = match &self.contamination {
                    None => Contamination::Fraction(0.03),
                    Some(toml::Value::String(s)) if s == "auto" => Contamination::Auto,
                    Some(toml::Value::Float(f)) if *f > 0.0 && *f <= 0.5 => {
                        Contamination::Fraction(*f)
                    }
                    Some(other) => {
                        return Err(invalid(
                            key("contamination"),
                            format!("{other} is neither \"auto\" nor a number in (0, 0.5]"),
                        ));
                    }
                };
                let replace_fraction =
                    fraction(self.replace_fraction.unwrap_or(0.1), "replace_fraction")?;
                let threshold = self.threshold.unwrap_or(0.999);
                if !(threshold > 0.0 && threshold < 1.0) {
                    return Err(invalid(
                        key("threshold"),
                        format!(
                            "{threshold} is not in (0, 1): it is the anomaly likelihood at or above which a step is flagged"
                        ),
                    ));
                }
                let likelihood_window = self.likelihood_window.unwrap_or(2);
                if !(1..=MAX_LIKELIHOOD_WINDOW).contains(&likelihood_window) {
                    return Err(invalid(
                        key("likelihood_window"),
                        format!(
                            "{likelihood_window} is not in 1..={} (steps averaged)",
                            MAX_LIKELIHOOD_WINDOW
                        ),
                    ));
                }
                let recurrence = self.recurrence.unwrap_or(Duration::ZERO);
                let recurrence_tolerance = self
                    .recurrence_tolerance
                    .unwrap_or(Duration::from_secs(3600));
                if !recurrence.is_zero() && recurrence_tolerance * 2 >= recurrence {
                    return Err(invalid(
                        key("recurrence_tolerance"),
                        format!(
                            "{} is not less than half of `recurrence` ({}): a step would recur from itself",
                            humantime::format_duration(recurrence_tolerance),
                            humantime::format_duration(recurrence)
                        ),
                    ));
                }
                if self.rarity_unit.is_some_and(|unit| unit.is_zero()) {
                    return Err(invalid(
                        key("rarity_unit"),
                        "must be longer than 0 (the time a step's rarity is read per)",
                    ));
                }
                (
                    ModelKind::IsolationForest(IsolationForestConfig {
                        n_estimators: positive(self.n_estimators.unwrap_or(100), "n_estimators")?,
                        max_samples: positive(self.max_samples.unwrap_or(256), "max_samples")?,
                        max_features: fraction(self.max_features.unwrap_or(1.0), "max_features")?,
                        contamination,
                        replace_fraction,
                        reservoir_size: positive(
                            self.reservoir_size.unwrap_or(10_080),
                            "reservoir_size",
                        )?,
                        gate_anomalies: self.gate_anomalies.unwrap_or(true),
                        threshold,
                        likelihood_window,
                        suppress: self.suppress.unwrap_or(Duration::from_secs(3600)),
                        recurrence,
                        recurrence_tolerance,
                        rarity_unit: self.rarity_unit,
                    }),
                    7,
                )
            }
            "random_forest" => {
                for (present, k) in [
                    (self.max_samples.is_some(), "max_samples"),
                    (self.contamination.is_some(), "contamination"),
                    (self.replace_fraction.is_some(), "replace_fraction"),
                    (self.reservoir_size.is_some(), "reservoir_size"),
                    (self.gate_anomalies.is_some(), "gate_anomalies"),
                    (self.threshold.is_some(), "threshold"),
                    (self.likelihood_window.is_some(), "likelihood_window"),
                    (self.suppress.is_some(), "suppress"),
                    (self.recurrence.is_some(), "recurrence"),
                    (self.recurrence_tolerance.is_some(), "recurrence_tolerance"),
                    (self.rarity_unit.is_some(), "rarity_unit"),
                ] {
                    only(present, k, "isolation_forest")?;
                }
                let target = self
                    .target
                    .unwrap_or_else(|| vec![self.features[0].clone()]);
                if target.is_empty() {
                    return Err(invalid(key("target"), "must name at least one feature"));
                }
                for t in &target {
                    if !self.features.contains(t) {
                        return Err(invalid(
                            key("target"),
                            format!("`{t}` is not one of the model's features"),
                        ));
                    }
                }
                let min_samples_split = self.min_samples_split.unwrap_or(5);
                if min_samples_split < 2 {
                    return Err(invalid(key("min_samples_split"), "must be at least 2"));
                }
                (
                    ModelKind::RandomForest(RandomForestConfig {
                        target,
                        lookback: positive(self.lookback.unwrap_or(24), "lookback")?,
                        horizon: positive(self.horizon.unwrap_or(12), "horizon")?,
                        n_estimators: positive(self.n_estimators.unwrap_or(100), "n_estimators")?,
                        max_depth: Some(positive(self.max_depth.unwrap_or(20), "max_depth")?),
                        min_samples_split,
                        min_samples_leaf: positive(
                            self.min_samples_leaf.unwrap_or(2),
                            "min_samples_leaf",
                        )?,
                        max_features: fraction(self.max_features.unwrap_or(1.0), "max_features")?,
                        bootstrap: self.bootstrap.unwrap_or(true),
                    }),
                    30,
                )
            }
            other => {
                return Err(invalid(
                    key("kind"),
                    format!(
                        "`{other}` is not a model kind: use \"isolation_forest\" or \"random_forest\""
                    ),
                ));
            }
        };
        let retrain_interval = self.retrain_interval.unwrap_or(Duration::from_secs(600));
        if retrain_interval.is_zero() {
            return Err(invalid(key("retrain_interval"), "must be longer than 0s"));
        }
        let training_days = training_days_override
            .or(self.training_days)
            .unwrap_or(default_days);
        if training_days == 0 {
            return Err(invalid(key("training_days"), "must be at least 1"));
        }
        Ok(ModelConfig {
            features: self.features,
            step,
            seed: self.seed.unwrap_or(42),
            training_days,
            retrain_interval,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn err(file: &str) -> String {
        Config::from_parts(Some((file, "test.toml")), &[])
            .expect_err("config must be refused")
            .to_string()
    }

    #[test]
    fn default_config_is_valid_with_both_models() {
        let c = Config::default_config().expect("default config is valid");
        assert_eq!(c.listen, SocketAddr::from(([0, 0, 0, 0], 8080)));
        assert_eq!(c.features.len(), 6);
        let d = &c.models["anomaly-detector"];
        assert_eq!(d.step, Duration::from_secs(60));
        assert_eq!(d.training_days, 7);
        let ModelKind::IsolationForest(i) = &d.kind else {
            panic!("detector kind")
        };
        assert_eq!(i.contamination, Contamination::Fraction(0.03));
        let f = &c.models["predictive-analytics"];
        let ModelKind::RandomForest(r) = &f.kind else {
            panic!("forecaster kind")
        };
        assert_eq!((r.lookback, r.horizon, f.training_days), (24, 12, 30));
        assert_eq!(r.target, ["cpu"]);
    }

    #[test]
    fn file_overrides_key_by_key_but_models_whole() {
        let c = Config::from_parts(
            Some((
                "[limits]\nmax_series = 10\n[models.only]\nkind = \"isolation_forest\"\nfeatures = [\"cpu\"]\ncontamination = \"auto\"\n",
                "t.toml",
            )),
            &[],
        )
        .expect("valid");
        assert_eq!(c.limits.max_series, 10);
        assert_eq!(
            c.limits.max_labels_per_series, 64,
            "other limits keep their defaults"
        );
        assert_eq!(c.models.keys().collect::<Vec<_>>(), ["only"]);
        assert_eq!(
            c.features.len(),
            6,
            "features were not in the file: default kept"
        );
        assert_eq!(c.models["only"].features, ["cpu"]);
    }

    #[test]
    fn environment_overrides() {
        let c = Config::from_parts(
            None,
            &env(&[
                ("CANOPY_LIMITS__MAX_SERIES", "123"),
                ("CANOPY_LISTEN", "127.0.0.1:9999"),
                ("DATA_SOURCE", "hybrid"),
                ("TRAINING_DAYS", "3"),
                ("PROMETHEUS_URL", "http://prom:9090"),
                ("UNRELATED", "x"),
                // what Kubernetes injects for a Service named canopy, and a tool's own variable
                ("CANOPY_SERVICE_HOST", "10.0.0.1"),
                ("CANOPY_PORT", "tcp://10.0.0.1:8080"),
                ("CANOPY_PORT_8080_TCP_ADDR", "10.0.0.1"),
                ("CANOPY_PYTHON", "/usr/bin/python3"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.limits.max_series, 123);
        assert_eq!(c.listen, SocketAddr::from(([127, 0, 0, 1], 9999)));
        assert_eq!(c.source.data_source, DataSource::Hybrid);
        assert_eq!(c.source.prometheus_url, "http://prom:9090");
        assert!(c.models.values().all(|m| m.training_days == 3));
    }

    #[test]
    fn source_keys_from_file_and_environment() {
        let c = Config::default_config().expect("default");
        assert_eq!(c.source.data_source, DataSource::Synthetic);
        assert_eq!(c.source.anomaly_rate, 0.03);
        assert_eq!(c.source.query_timeout, Duration::from_secs(30));
        assert_eq!(c.source.query_retries, 3);
        assert!(c.source.bearer_token_file.is_none() && c.source.ca_file.is_none());
        let c = Config::from_parts(
            Some((
                "[source]\nbasic_auth_user = \"prom\"\nbasic_auth_password_file = \"/etc/pw\"\n",
                "t.toml",
            )),
            &env(&[
                ("CANOPY_SOURCE__CA_FILE", "/var/run/secrets/ca.crt"),
                ("CANOPY_SOURCE__QUERY_TIMEOUT", "5s"),
                ("CANOPY_SOURCE__QUERY_RETRIES", "0"),
                ("ANOMALY_RATE", "0.1"),
                ("DATA_SOURCE", "prometheus"),
            ]),
        )
        .expect("valid");
        assert_eq!(c.source.basic_auth_user.as_deref(), Some("prom"));
        assert_eq!(
            c.source.basic_auth_password_file,
            Some(PathBuf::from("/etc/pw"))
        );
        assert_eq!(
            c.source.ca_file,
            Some(PathBuf::from("/var/run/secrets/ca.crt"))
        );
        assert_eq!(c.source.query_timeout, Duration::from_secs(5));
        assert_eq!(c.source.query_retries, 0);
        assert_eq!(c.source.anomaly_rate, 0.1);
        assert_eq!(c.source.data_source, DataSource::Prometheus);
        let e = err("[source]\nbearer_token_file = \"/t\"\nbasic_auth_user = \"u\"\n");
        assert!(e.contains("source.bearer_token_file"), "{e}");
        let e = err("[source]\nbasic_auth_password_file = \"/p\"\n");
        assert!(e.contains("source.basic_auth_password_file"), "{e}");
        let e = err("[source]\nprometheus_url = \"prom:9090\"\n");
        assert!(e.contains("source.prometheus_url"), "{e}");
        let e = err("[source]\ndata_source = \"csv\"\n");
        assert!(e.contains("source.data_source"), "{e}");
        let e = err("[source]\ncert_file = \"/c\"\n");
        assert!(e.contains("cert_file"), "{e}");
        let e = Config::from_parts(None, &env(&[("ANOMALY_RATE", "0.7")]))
            .expect_err("refused")
            .to_string();
        assert!(e.contains("source.anomaly_rate"), "{e}");
    }

    #[test]
    fn server_keys_from_file_and_environment() {
        let c = Config::default_config().expect("default");
        assert!(c.server.bearer_token_file.is_none() && c.server.tls_cert_file.is_none());
        assert!(!c.server.metrics_open);
        let c = Config::from_parts(
            Some((
                "[server]\nbearer_token_file = \"/etc/canopy/token\"\n",
                "t.toml",
            )),
            &env(&[
                ("CANOPY_SERVER__METRICS_OPEN", "true"),
                ("CANOPY_SERVER__TLS_CERT_FILE", "/etc/tls/tls.crt"),
                ("CANOPY_SERVER__TLS_KEY_FILE", "/etc/tls/tls.key"),
            ]),
        )
        .expect("valid");
        assert_eq!(
            c.server.bearer_token_file,
            Some(PathBuf::from("/etc/canopy/token"))
        );
        assert!(c.server.metrics_open);
        assert_eq!(
            c.server.tls_cert_file,
            Some(PathBuf::from("/etc/tls/tls.crt"))
        );
        assert_eq!(
            c.server.tls_key_file,
            Some(PathBuf::from("/etc/tls/tls.key"))
        );
        let e = err("[server]\ntls_cert_file = \"/c\"\n");
        assert!(
            e.starts_with("config key `server.tls_key_file`: is missing") && e.contains("both"),
            "{e}"
        );
        let e = err("[server]\ntls_key_file = \"/k\"\n");
        assert!(e.starts_with("config key `server.tls_cert_file`"), "{e}");
        let e = err("[server]\nbearer_token_file = \"\"\n");
        assert!(
            e.starts_with("config key `server.bearer_token_file`: is empty"),
            "{e}"
        );
        let e = err("[server]\ntoken_file = \"/t\"\n");
        assert!(e.contains("token_file"), "{e}");
        // `canopy serve` reads the section from the environment alone
        let s = ServerConfig::from_env(&env(&[
            ("CANOPY_SERVER__BEARER_TOKEN_FILE", "/t"),
            ("CANOPY_LIMITS__MAX_SERIES", "not read"),
        ]))
        .expect("valid");
        assert_eq!(s.bearer_token_file, Some(PathBuf::from("/t")));
        assert!(
            ServerConfig::from_env(&[])
                .expect("none")
                .tls_cert_file
                .is_none()
        );
        let e = ServerConfig::from_env(&env(&[("CANOPY_SERVER__TLS_KEY_FILE", "/k")]))
            .expect_err("refused")
            .to_string();
        assert!(e.contains("server.tls_cert_file"), "{e}");
        let e = ServerConfig::from_env(&env(&[("CANOPY_SERVER__TOKEN", "/k")]))
            .expect_err("refused")
            .to_string();
        assert!(e.contains("`server.token`"), "{e}");
    }

    #[test]
    fn a_toml_syntax_error_names_file_line_and_column_and_shows_the_line() {
        let e = err("[limits]\nmax_series = = 3\n");
        let lines: Vec<&str> = e.lines().collect();
        assert!(
            lines[0].starts_with("test.toml is not valid TOML: ") && lines[0].contains('='),
            "{e}"
        );
        assert_eq!(lines[1], " --> test.toml:2:14", "{e}");
        assert_eq!(lines[2], "  |", "{e}");
        assert_eq!(lines[3], "2 | max_series = = 3", "{e}");
        assert_eq!(lines[4], "  |              ^", "{e}");
        assert_eq!(lines.len(), 5, "{e}");
    }

    #[test]
    fn a_replaced_models_or_features_table_explains_what_it_lacks() {
        // one key of a default model overridden: the file's [models] replaced the default's
        let e = err("[models.anomaly-detector]\ncontamination = 0.01\n");
        assert!(
            e.starts_with("config key `models.anomaly-detector`: missing field `kind`\nhint: "),
            "{e}"
        );
        assert!(
            e.contains("replaces the default's whole") && e.contains("has no `kind`"),
            "{e}"
        );
        assert_eq!(e.matches("missing field").count(), 1, "said once: {e}");
        let e = err("[models.anomaly-detector]\nkind = \"isolation_forest\"\n");
        assert!(
            e.contains("missing field `features`") && e.contains("has no `features`"),
            "{e}"
        );
        // the default's models read features the file's [features] no longer defines
        let e = err("[features]\ncpu = 'avg(x)'\n");
        assert!(e.contains("`memory` is not defined in [features]"), "{e}");
        assert!(
            e.contains("hint: test.toml has a [features] table")
                && e.contains("memory = 'avg(1 - node_memory_MemAvailable_bytes"),
            "{e}"
        );
        // no hint where the default is not involved
        let e = err("[limits]\nmax_seriez = 1\n");
        assert!(!e.contains("hint"), "{e}");
    }

    #[test]
    fn listen_accepts_a_bare_port_as_every_ipv4_interface() {
        let any = |p| SocketAddr::from(([0, 0, 0, 0], p));
        assert_eq!(parse_listen(":18080"), Ok(any(18080)));
        assert_eq!(parse_listen(" :8080 "), Ok(any(8080)));
        assert_eq!(parse_listen("0.0.0.0:8080"), Ok(any(8080)));
        assert_eq!(
            parse_listen("[::1]:9000"),
            Ok("[::1]:9000".parse().expect("v6"))
        );
        for bad in [":", ":http", ":70000", "8080", "localhost:8080", ""] {
            let e = parse_listen(bad).expect_err(bad);
            assert!(e.contains(":8080"), "{e}");
        }
        let c = Config::from_parts(Some(("listen = \":9100\"\n", "t.toml")), &[]).expect("valid");
        assert_eq!(c.listen, any(9100));
        let c = Config::from_parts(None, &env(&[("CANOPY_LISTEN", ":9200")])).expect("valid");
        assert_eq!(c.listen, any(9200));
    }

    #[test]
    fn errors_name_the_key() {
        assert!(
            err("[limits]\nmax_seriez = 1\n").contains("max_seriez"),
            "{}",
            err("[limits]\nmax_seriez = 1\n")
        );
        assert!(err("bogus = 1\n").contains("bogus"));
        let e = err("[evaluation]\nstep = \"fast\"\n");
        assert!(e.contains("evaluation.step") && e.contains("fast"), "{e}");
        let e = err("[models.m]\nkind = \"isolation_forest\"\nfeatures = [\"nope\"]\n");
        assert!(e.contains("models.m.features") && e.contains("nope"), "{e}");
        let e =
            err("[models.m]\nkind = \"isolation_forest\"\nfeatures = [\"cpu\"]\nlookback = 3\n");
        assert!(
            e.contains("models.m.lookback") && e.contains("random_forest"),
            "{e}"
        );
        let e =
            err("[models.m]\nkind = \"isolation_forest\"\nfeatures = [\"cpu\"]\nstep = \"45s\"\n");
        assert!(e.contains("models.m.step") && e.contains("multiple"), "{e}");
        let e = err("[features]\ncpu = 'rate(x[5m]'\n");
        assert!(e.contains("features.cpu"), "{e}");
        let e = err("listen = \"nowhere\"\n");
        assert!(e.contains("listen"), "{e}");
        let e = err("[limits\n");
        assert!(e.contains("test.toml") && e.contains("TOML"), "{e}");
        let e = Config::from_parts(None, &env(&[("CANOPY_MODELS__X", "1")]))
            .expect_err("refused")
            .to_string();
        assert!(e.contains("CANOPY_MODELS__X"), "{e}");
    }

    #[test]
    fn recurrence_is_off_by_default_and_its_tolerance_below_half_the_period() {
        let model = "[models.d]\nkind = \"isolation_forest\"\nfeatures = [\"cpu\"]\n";
        let forest = |file: &str| {
            let c = Config::from_parts(Some((file, "t.toml")), &[]).expect("valid");
            let ModelKind::IsolationForest(i) = &c.models["d"].kind else {
                panic!("detector kind")
            };
            (i.recurrence, i.recurrence_tolerance)
        };
        assert_eq!(forest(model), (Duration::ZERO, Duration::from_secs(3600)));
        assert_eq!(
            forest(&format!(
                "{model}recurrence = \"1d\"\nrecurrence_tolerance = \"30m\"\n"
            )),
            (Duration::from_secs(86_400), Duration::from_secs(1800))
        );
        let e = err(&format!("{model}recurrence = \"2h\"\n"));
        assert!(
            e.contains("models.d.recurrence_tolerance") && e.contains("half"),
            "{e}"
        );
        let e = err(&format!("{model}rarity_unit = \"0s\"\n"));
        assert!(e.contains("models.d.rarity_unit"), "{e}");
        let e = err(
            "[models.f]\nkind = \"random_forest\"\nfeatures = [\"cpu\"]\nrecurrence = \"1d\"\n",
        );
        assert!(e.contains("recurrence"), "{e}");
    }
}
