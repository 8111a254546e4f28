//! Prometheus remote-write ingest: from a compressed request body to samples in the store.
//!
//! [`handler`] owns HTTP (content negotiation, limits, overload and every status code);
//! [`Ingestor::write`] owns the rest: snappy with its size checked before allocating, the
//! zero-copy protobuf [`decode`], label validation, the feature prefilter and the append. Every
//! sample and series that is not kept is counted in a metric with its reason.

pub mod decode;
pub(crate) mod handler;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use metrics::counter;

use crate::series::{Prefilter, SeriesStore};
use decode::{Allowance, Batch, Filter, LabelLimits, Rules, SeriesProblem, Spare, WireError};

/// The prost types generated from `proto/` at build time.
pub mod proto {
    /// Remote-write 1.0 (`prometheus.WriteRequest`).
    pub mod v1 {
        include!(concat!(env!("OUT_DIR"), "/prometheus.rs"));
    }
    /// Remote-write 2.0 (`io.prometheus.write.v2.Request`).
    pub mod v2 {
        include!(concat!(env!("OUT_DIR"), "/io.prometheus.write.v2.rs"));
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V1,
    V2,
}

impl Protocol {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Protocol::V1 => "1.0",
            Protocol::V2 => "2.0",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct IngestLimits {
    pub(crate) max_request_bytes: usize,
    pub(crate) max_decoded_bytes: usize,
    pub(crate) labels: LabelLimits,
    /// Samples stamped more than this far ahead of the wall clock are dropped (`too_far_ahead`):
    /// one host with a wrong clock would otherwise move the event time of every series, and
    /// every live sample after it would be too old.
    pub(crate) max_future_ms: i64,
}

/// Why a whole request was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("decoded body would be {claimed} bytes, over the limit of {limit}")]
    DecodedTooLarge { claimed: usize, limit: usize },
    #[error("body is not snappy block format: {0}")]
    Snappy(String),
    #[error("{source}")]
    OverBudget { source: WireError },
    #[error("body is not a valid {protocol} request: {source}")]
    Wire {
        protocol: &'static str,
        source: WireError,
    },
}

/// What a write accepted. Accepted counts include what the prefilter dropped, and exemplars and
/// histograms canopy does not keep: the sender delivered them and must not resend them.
#[derive(Debug, Default, Clone)]
pub struct WriteOutcome {
    pub(crate) samples_written: u64,
    pub(crate) histograms_written: u64,
    pub(crate) exemplars_written: u64,
    pub(crate) invalid_series: u64,
    /// The first invalid series' problem: the request then answers 400 naming it.
    pub(crate) first_problem: Option<SeriesProblem>,
}

/// What [`Ingestor::decode_and_filter`] found in a request.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Sifted {
    pub(crate) kept_series: u64,
    pub kept_samples: u64,
    /// Samples of valid series that no feature selector matches.
    pub(crate) dropped_samples: u64,
    pub(crate) invalid_series: u64,
}

pub struct Ingestor {
    store: Arc<SeriesStore>,
    prefilter: Prefilter,
    limits: IngestLimits,
}

/// Per-request tallies, turned into metrics once per request rather than once per sample.
#[derive(Default)]
struct Tally {
    unmatched: u64,
    appended: u64,
    duplicate: u64,
    conflicting: u64,
    too_old: u64,
    too_far_ahead: u64,
    over_series_limit: u64,
    new_series: u64,
}

impl Ingestor {
    pub fn new(store: Arc<SeriesStore>, prefilter: Prefilter, limits: IngestLimits) -> Ingestor {
        Ingestor {
            store,
            prefilter,
            limits,
        }
    }

    pub(crate) fn limits(&self) -> &IngestLimits {
        &self.limits
    }

    /// Decompresses, decodes, validates, filters and appends one request body. The decoded
    /// labels, samples and series grow only by what `allowance` grants.
    pub fn write(
        &self,
        protocol: Protocol,
        compressed: &[u8],
        allowance: &mut Allowance<'_>,
    ) -> Result<WriteOutcome, IngestError> {
        with_body_buffer(|buf| {
            let body = self.decompress(compressed, buf)?;
            let batch = self.decode(protocol, body, allowance)?;
            let out = self.append(protocol, &batch);
            keep_spare(batch);
            Ok(out)
        })
    }

    /// Decompresses, decodes, validates and filters one request body without appending: what
    /// ingest costs before the store, measured on its own by `benches/ingest.rs`.
    pub fn decode_and_filter(
        &self,
        protocol: Protocol,
        compressed: &[u8],
        allowance: &mut Allowance<'_>,
    ) -> Result<Sifted, IngestError> {
        with_body_buffer(|buf| {
            let body = self.decompress(compressed, buf)?;
            let batch = self.decode(protocol, body, allowance)?;
            let mut out = Sifted {
                dropped_samples: batch.unmatched.samples,
                ..Sifted::default()
            };
            for e in &batch.series {
                if e.problem.is_some() {
                    out.invalid_series += 1;
                } else {
                    out.kept_series += 1;
                    out.kept_samples += batch.samples_of(e).len() as u64;
                }
            }
            keep_spare(batch);
            Ok(out)
        })
    }

    /// Decompresses into `buf` (grown, never shrunk: see [`with_body_buffer`]).
    fn decompress<'b>(
        &self,
        compressed: &[u8],
        buf: &'b mut Vec<u8>,
    ) -> Result<&'b [u8], IngestError> {
        let claimed = snap::raw::decompress_len(compressed)
            .map_err(|e| IngestError::Snappy(e.to_string()))?;
        if claimed > self.limits.max_decoded_bytes {
            return Err(IngestError::DecodedTooLarge {
                claimed,
                limit: self.limits.max_decoded_bytes,
            });
        }
        if buf.len() < claimed {
            buf.resize(claimed, 0);
        }
        let n = snap::raw::Decoder::new()
            .decompress(compressed, &mut buf[..claimed])
            .map_err(|e| IngestError::Snappy(e.to_string()))?;
        Ok(&buf[..n])
    }

    fn decode<'a>(
        &self,
        protocol: Protocol,
        body: &'a [u8],
        allowance: &mut Allowance<'_>,
    ) -> Result<Batch<'a>, IngestError> {
        let rules = Rules {
            limits: &self.limits.labels,
            filter: &self.prefilter,
        };
        let spare = SPARE.take();
        match protocol {
            Protocol::V1 => decode::decode_v1_into(body, rules, allowance, spare),
            Protocol::V2 => decode::decode_v2_into(body, rules, allowance, spare),
        }
        .map_err(|source| match source {
            WireError::OverBudget { .. } => IngestError::OverBudget { source },
            source => IngestError::Wire {
                protocol: protocol.label(),
                source,
            },
        })
    }

    /// Appends a decoded batch: invalid series are refused, the kept ones appended (the decoder
    /// has already dropped, and counted, those no feature can use).
    pub fn append(&self, protocol: Protocol, batch: &Batch<'_>) -> WriteOutcome {
        let mut out = WriteOutcome::default();
        let u = batch.unmatched;
        out.samples_written += u.samples;
        out.histograms_written += u.histograms;
        out.exemplars_written += u.exemplars;
        let mut t = Tally {
            unmatched: u.samples,
            ..Tally::default()
        };
        let horizon = wall_clock_ms().saturating_add(self.limits.max_future_ms);
        let mut in_time = Vec::new();
        for e in &batch.series {
            let samples = batch.samples_of(e);
            if let Some(problem) = &e.problem {
                out.invalid_series += 1;
                counter!("canopy_series_rejected_total", "reason" => problem.reason()).increment(1);
                counter!("canopy_samples_rejected_total", "reason" => problem.reason())
                    .increment(samples.len() as u64);
                out.first_problem.get_or_insert_with(|| problem.clone());
                continue;
            }
            out.samples_written += samples.len() as u64;
            out.histograms_written += e.histograms;
            out.exemplars_written += e.exemplars;
            let pairs = batch.pairs(e);
            let mut samples = samples;
            if samples.iter().any(|s| s.t > horizon) {
                in_time.clear();
                in_time.extend(samples.iter().filter(|s| s.t <= horizon).copied());
                t.too_far_ahead += (samples.len() - in_time.len()) as u64;
                log_too_far_ahead(pairs, horizon);
                samples = &in_time;
            }
            let o = self.store.append(pairs, samples);
            t.appended += o.appended;
            t.duplicate += o.duplicate;
            t.conflicting += o.conflicting;
            t.too_old += o.too_old;
            t.over_series_limit += o.over_series_limit;
            t.new_series += u64::from(o.new_series);
        }
        let p = protocol.label();
        let histograms: u64 = u.histograms + batch.series.iter().map(|e| e.histograms).sum::<u64>();
        let exemplars: u64 = u.exemplars + batch.series.iter().map(|e| e.exemplars).sum::<u64>();
        counter!("canopy_samples_received_total", "protocol" => p)
            .increment(batch.samples.len() as u64 + u.samples);
        counter!("canopy_series_received_total", "protocol" => p)
            .increment(batch.series.len() as u64 + u.series);
        counter!("canopy_histograms_received_total", "protocol" => p).increment(histograms);
        counter!("canopy_exemplars_received_total", "protocol" => p).increment(exemplars);
        counter!("canopy_metadata_received_total", "protocol" => p).increment(batch.metadata);
        counter!("canopy_samples_appended_total").increment(t.appended);
        counter!("canopy_series_created_total").increment(t.new_series);
        for (reason, n) in [
            ("unmatched", t.unmatched),
            ("duplicate", t.duplicate),
            ("conflicting_value", t.conflicting),
            ("too_old", t.too_old),
            ("too_far_ahead", t.too_far_ahead),
            ("series_limit", t.over_series_limit),
        ] {
            if n > 0 {
                counter!("canopy_samples_dropped_total", "reason" => reason).increment(n);
            }
        }
        metrics::gauge!("canopy_active_series").set(self.store.active_series() as f64);
        out
    }
}

impl Filter for Prefilter {
    fn by_name(&self, name: &str) -> Option<bool> {
        Prefilter::by_name(self, name)
    }

    fn keep(&self, pairs: &[(&str, &str)]) -> bool {
        self.accepts(pairs)
    }
}

/// Decompressed bodies up to this size leave their buffer to the thread's next request.
const RETAINED_BODY_BYTES: usize = 4 << 20;

thread_local! {
    /// The thread's decompression buffer. A fresh buffer per request cost a page fault per 4 KiB
    /// (a 2,000-sample body is about 600 KiB), a tenth of decoding's time; reused, its pages stay
    /// mapped. Bodies over [`RETAINED_BODY_BYTES`] get a buffer of their own, freed after the
    /// request, so each worker thread keeps at most that much outside the in-flight byte budget.
    static BODY_BUFFER: std::cell::Cell<Vec<u8>> = const { std::cell::Cell::new(Vec::new()) };
}

/// A decoding's vectors up to this size (a 2,000-sample request's take about 350 KiB) are left
/// to the thread's next request.
const RETAINED_DECODE_BYTES: usize = 1 << 20;

thread_local! {
    /// The vectors of the thread's last decoding, empty: a request that grew its own from nothing
    /// spent a tenth of its time copying them as they doubled and faulting pages back in.
    static SPARE: std::cell::Cell<Spare> = std::cell::Cell::new(Spare::default());
}

/// Leaves `batch`'s vectors to the thread's next decoding, unless they are over
/// [`RETAINED_DECODE_BYTES`]: each worker thread keeps at most that much outside the in-flight
/// byte budget.
fn keep_spare(batch: Batch<'_>) {
    let spare = batch.into_spare();
    if spare.bytes() <= RETAINED_DECODE_BYTES {
        SPARE.set(spare);
    }
}

/// Runs `f` with the thread's decompression buffer (taken out for the call, so a nested call
/// gets an empty one rather than a borrow error).
fn with_body_buffer<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = BODY_BUFFER.take();
    let out = f(&mut buf);
    if buf.len() <= RETAINED_BODY_BYTES {
        BODY_BUFFER.set(buf);
    }
    out
}

/// Milliseconds since the Unix epoch by the wall clock.
fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Logs a series with samples from the future, at most once a minute: a wrong clock on a host
/// keeps sending them, and the counter says how many.
fn log_too_far_ahead(pairs: &[(&str, &str)], horizon_ms: i64) {
    static LAST_LOG_MS: AtomicI64 = AtomicI64::new(i64::MIN);
    let now = wall_clock_ms();
    let last = LAST_LOG_MS.load(Ordering::Relaxed);
    if now.saturating_sub(last) >= 60_000
        && LAST_LOG_MS
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        let series = pairs
            .iter()
            .map(|(n, v)| format!("{n}={v:?}"))
            .collect::<Vec<_>>()
            .join(",");
        tracing::warn!(series = %format!("{{{series}}}"), horizon_ms, "samples stamped past limits.max_future dropped (a sender's clock is ahead?); counted in canopy_samples_dropped_total{{reason=\"too_far_ahead\"}}, logged once a minute");
    }
}
