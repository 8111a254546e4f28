//! Zero-copy protobuf decoding of remote-write 1.0 and 2.0 requests.
//!
//! prost's generated types allocate a `String` per label name and value; Prometheus sends one
//! sample per `TimeSeries` with the full label set each time, so a 2,000-sample request would cost
//! tens of thousands of allocations. This decoder borrows every label straight from the
//! decompressed buffer instead, and validates as it goes. The prost types generated from
//! `proto/` remain the reference: the tests encode with them and decode with this.
//!
//! Decoding is all-or-nothing at the wire level (a malformed body yields [`WireError`] and nothing
//! is accepted), while a series whose labels are invalid is marked with its [`SeriesProblem`] and
//! the rest of the request stays acceptable: a partial write, as Prometheus's own receiver does.

use std::ops::Range;

use crate::series::Sample;
use crate::series::labels::METRIC_NAME;

/// The body is not a well-formed request of the negotiated protocol.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated protobuf: {0} runs past the end of the body")]
    Truncated(&'static str),
    #[error("malformed varint in {0}")]
    Varint(&'static str),
    #[error("unsupported protobuf wire type {wire_type} for field {field} in {message}")]
    WireType {
        message: &'static str,
        field: u64,
        wire_type: u64,
    },
    #[error("protobuf field number 0 in {0}")]
    FieldZero(&'static str),
    #[error("symbols[0] must be the empty string")]
    FirstSymbolNotEmpty,
    /// Decoding needed more memory than the in-flight byte budget granted (see [`Allowance`]):
    /// not malformed, but refused before it is held.
    #[error(
        "decoding it needs more than the {granted} bytes of in-flight memory granted so far for its labels, samples and series"
    )]
    OverBudget { granted: usize },
}

/// What decoding may allocate beside the body. Labels, samples and series take more memory
/// decoded than on the wire (an empty `Sample` is 2 bytes sent and 16 held; an empty
/// `TimeSeries` 2 and about 80), so the decoder's vectors grow only by what `grow` grants, asked
/// for before each allocation; the receiver charges it to its in-flight byte budget. Growth
/// doubles a vector's capacity, so a request asks a few dozen times, not once per element.
pub struct Allowance<'g> {
    grow: Option<&'g mut dyn FnMut(usize) -> bool>,
    granted: usize,
}

impl<'g> Allowance<'g> {
    /// Grants what `grow` returns true for, and nothing more.
    pub fn new(grow: &'g mut dyn FnMut(usize) -> bool) -> Self {
        Allowance {
            grow: Some(grow),
            granted: 0,
        }
    }

    /// Grants everything: for callers that bound memory otherwise (replay, tests, fuzzing).
    pub fn unlimited() -> Allowance<'static> {
        Allowance {
            grow: None,
            granted: 0,
        }
    }

    /// The bytes granted so far.
    #[cfg(test)]
    pub(crate) fn granted(&self) -> usize {
        self.granted
    }

    #[inline]
    fn push<T>(&mut self, v: &mut Vec<T>, item: T) -> Result<(), WireError> {
        if v.len() == v.capacity() {
            self.double(v)?;
        }
        v.push(item);
        Ok(())
    }

    #[cold]
    fn double<T>(&mut self, v: &mut Vec<T>) -> Result<(), WireError> {
        let more = v.capacity().max(64);
        let bytes = more.saturating_mul(size_of::<T>());
        if let Some(grow) = self.grow.as_mut()
            && !grow(bytes)
        {
            return Err(WireError::OverBudget {
                granted: self.granted,
            });
        }
        self.granted = self.granted.saturating_add(bytes);
        v.reserve_exact(more);
        Ok(())
    }
}

/// Why one series was refused; the first one found names the 400 answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SeriesProblem {
    #[error("series has no __name__ label")]
    MissingName,
    #[error("series has a label with an empty name")]
    EmptyLabelName,
    #[error("series has label {0:?} more than once")]
    DuplicateLabel(String),
    #[error("series has a label name or value that is not valid UTF-8")]
    InvalidUtf8,
    #[error("series has {count} labels, over the limit of {limit}")]
    TooManyLabels { count: usize, limit: usize },
    #[error("series has a label name of {len} bytes, over the limit of {limit}")]
    NameTooLong { len: usize, limit: usize },
    #[error("series has a label value of {len} bytes, over the limit of {limit}")]
    ValueTooLong { len: usize, limit: usize },
    #[error("{what} refers to symbol {index}, but the symbols table has {len}")]
    SymbolOutOfRange {
        what: &'static str,
        index: u64,
        len: usize,
    },
    #[error("{what} has an odd number of label references ({len})")]
    OddLabelRefs { what: &'static str, len: usize },
    #[error("series has an invalid native histogram: {0}")]
    InvalidHistogram(&'static str),
}

impl SeriesProblem {
    /// A short, stable name for the `reason` label of the rejection metrics.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            SeriesProblem::MissingName => "missing_metric_name",
            SeriesProblem::EmptyLabelName => "empty_label_name",
            SeriesProblem::DuplicateLabel(_) => "duplicate_label",
            SeriesProblem::InvalidUtf8 => "invalid_utf8",
            SeriesProblem::TooManyLabels { .. } => "too_many_labels",
            SeriesProblem::NameTooLong { .. } => "label_name_too_long",
            SeriesProblem::ValueTooLong { .. } => "label_value_too_long",
            SeriesProblem::SymbolOutOfRange { .. } => "bad_symbol_reference",
            SeriesProblem::OddLabelRefs { .. } => "bad_symbol_reference",
            SeriesProblem::InvalidHistogram(_) => "invalid_histogram",
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct LabelLimits {
    pub(crate) max_labels: usize,
    pub(crate) max_name_bytes: usize,
    pub(crate) max_value_bytes: usize,
}

/// One decoded series: its sorted labels and samples are ranges into the [`Batch`].
#[derive(Debug, Clone)]
pub(crate) struct SeriesEntry {
    pub(crate) labels: Range<usize>,
    pub(crate) samples: Range<usize>,
    pub(crate) histograms: u64,
    pub(crate) exemplars: u64,
    pub(crate) problem: Option<SeriesProblem>,
}

/// A decoded request, borrowing label strings from the decompressed body. It holds the series
/// the filter kept and the invalid ones; valid series the filter refused are only counted.
#[derive(Debug, Default)]
pub struct Batch<'a> {
    pub(crate) labels: Vec<(&'a str, &'a str)>,
    pub(crate) samples: Vec<Sample>,
    pub(crate) series: Vec<SeriesEntry>,
    /// Valid series the filter refused: accepted from the sender, not kept.
    pub(crate) unmatched: Unmatched,
    /// 1.0 metadata entries (2.0 carries metadata inside each series).
    pub(crate) metadata: u64,
}

/// A decoding's vectors, empty, kept between requests: a thread's next request reuses their
/// capacity rather than growing them again from nothing, each growth a copy of everything held
/// so far and, past a few hundred KiB, pages the allocator had given back.
#[derive(Debug, Default)]
pub(crate) struct Spare {
    labels: Vec<(&'static str, &'static str)>,
    samples: Vec<Sample>,
    series: Vec<SeriesEntry>,
}

impl Spare {
    /// The bytes its vectors hold.
    pub(crate) fn bytes(&self) -> usize {
        fn bytes<T>(v: &Vec<T>) -> usize {
            v.capacity() * size_of::<T>()
        }
        bytes(&self.labels) + bytes(&self.samples) + bytes(&self.series)
    }
}

/// An empty vector with `v`'s allocation, for elements of another lifetime: the standard
/// library collects a vector's own iterator in place when the element layouts match, so the
/// allocation is kept (a test checks that it is).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter().filter_map(|_| None).collect()
}

/// What the valid series that the filter refused carried.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unmatched {
    pub(crate) series: u64,
    pub(crate) samples: u64,
    pub(crate) histograms: u64,
    pub(crate) exemplars: u64,
}

/// Decides whether a valid series is kept: the ingest prefilter.
pub(crate) trait Filter {
    /// What the metric name alone decides: `Some(keep)`, or `None` when the other labels
    /// decide. Asked before a series' labels are collected, so a series dropped by its name
    /// costs only its scan and validation.
    fn by_name(&self, name: &str) -> Option<bool>;
    /// Whether the series with these sorted labels is kept.
    fn keep(&self, pairs: &[(&str, &str)]) -> bool;
}

/// Keeps every valid series.
#[cfg(test)]
pub(crate) struct KeepAll;

#[cfg(test)]
impl Filter for KeepAll {
    fn by_name(&self, _: &str) -> Option<bool> {
        Some(true)
    }

    fn keep(&self, _: &[(&str, &str)]) -> bool {
        true
    }
}

/// How a decoder judges each series: the label limits and the filter.
#[derive(Clone, Copy)]
pub(crate) struct Rules<'k> {
    pub(crate) limits: &'k LabelLimits,
    pub(crate) filter: &'k dyn Filter,
}

impl<'a> Batch<'a> {
    /// An empty batch that fills `spare`'s vectors.
    fn from_spare(spare: Spare) -> Batch<'a> {
        Batch {
            labels: recycle(spare.labels),
            samples: recycle(spare.samples),
            series: recycle(spare.series),
            ..Batch::default()
        }
    }

    /// Its vectors, emptied, for the next batch.
    pub(crate) fn into_spare(self) -> Spare {
        Spare {
            labels: recycle(self.labels),
            samples: recycle(self.samples),
            series: recycle(self.series),
        }
    }

    pub(crate) fn pairs(&self, e: &SeriesEntry) -> &[(&'a str, &'a str)] {
        &self.labels[e.labels.clone()]
    }

    pub(crate) fn samples_of(&self, e: &SeriesEntry) -> &[Sample] {
        &self.samples[e.samples.clone()]
    }
}

const VARINT: u64 = 0;
const FIXED64: u64 = 1;
const LEN: u64 = 2;
const FIXED32: u64 = 5;

/// A cursor over one protobuf message.
struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    message: &'static str,
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8], message: &'static str) -> Self {
        Reader {
            buf,
            pos: 0,
            message,
        }
    }

    fn done(&self) -> bool {
        self.pos >= self.buf.len()
    }

    #[inline]
    fn varint(&mut self) -> Result<u64, WireError> {
        // Tags and short lengths, nearly every varint of a remote-write body, are one byte.
        if let Some(&b) = self.buf.get(self.pos)
            && b < 0x80
        {
            self.pos += 1;
            return Ok(u64::from(b));
        }
        self.varint_long()
    }

    /// A varint of two bytes or more: a series' length, a sample's timestamp (six bytes for a
    /// time in milliseconds). Walks the bytes left, at most ten, without a bound check each.
    #[inline]
    fn varint_long(&mut self) -> Result<u64, WireError> {
        let rest = self.buf.get(self.pos..).unwrap_or_default();
        let mut v: u64 = 0;
        for (i, &b) in rest.iter().take(10).enumerate() {
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                self.pos += i + 1;
                return Ok(v);
            }
        }
        Err(if rest.len() >= 10 {
            WireError::Varint(self.message)
        } else {
            WireError::Truncated(self.message)
        })
    }

    /// The next field's number and wire type.
    #[inline]
    fn key(&mut self) -> Result<(u64, u64), WireError> {
        let k = self.varint()?;
        let field = k >> 3;
        if field == 0 {
            return Err(WireError::FieldZero(self.message));
        }
        Ok((field, k & 7))
    }

    #[inline]
    fn bytes(&mut self) -> Result<&'a [u8], WireError> {
        let len = self.varint()?;
        let end = usize::try_from(len)
            .ok()
            .and_then(|l| self.pos.checked_add(l))
            .filter(|&e| e <= self.buf.len())
            .ok_or(WireError::Truncated(self.message))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    #[inline]
    fn fixed64(&mut self) -> Result<u64, WireError> {
        let end = self.pos + 8;
        let b = self
            .buf
            .get(self.pos..end)
            .ok_or(WireError::Truncated(self.message))?;
        self.pos = end;
        Ok(u64::from_le_bytes(b.try_into().expect("slice of 8 bytes")))
    }

    /// Skips a field this decoder does not need, so newer senders' extra fields are accepted.
    fn skip(&mut self, field: u64, wire_type: u64) -> Result<(), WireError> {
        match wire_type {
            VARINT => self.varint().map(drop),
            FIXED64 => self.fixed64().map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => {
                self.pos += 4;
                if self.pos > self.buf.len() {
                    return Err(WireError::Truncated(self.message));
                }
                Ok(())
            }
            _ => Err(WireError::WireType {
                message: self.message,
                field,
                wire_type,
            }),
        }
    }

    fn expect(&self, field: u64, got: u64, want: u64) -> Result<(), WireError> {
        if got == want {
            Ok(())
        } else {
            Err(WireError::WireType {
                message: self.message,
                field,
                wire_type: got,
            })
        }
    }
}

/// Decodes a `Sample` (both versions share fields 1 and 2; 2.0's start_timestamp is skipped).
#[inline]
fn decode_sample(buf: &[u8]) -> Result<Sample, WireError> {
    // Nearly always the value then the timestamp, both non-zero: read without the general walk.
    if let [0x09, v @ ..] = buf
        && let Some((v, [0x10, ..])) = v.split_first_chunk::<8>()
    {
        let mut r = Reader {
            buf,
            pos: 10,
            message: "Sample",
        };
        let t = r.varint()? as i64;
        if r.done() {
            return Ok(Sample {
                t,
                v: f64::from_le_bytes(*v),
            });
        }
    }
    let mut r = Reader::new(buf, "Sample");
    let mut s = Sample { t: 0, v: 0.0 };
    while !r.done() {
        match r.key()? {
            (1, w) => {
                r.expect(1, w, FIXED64)?;
                s.v = f64::from_bits(r.fixed64()?);
            }
            (2, w) => {
                r.expect(2, w, VARINT)?;
                s.t = r.varint()? as i64;
            }
            (f, w) => r.skip(f, w)?,
        }
    }
    Ok(s)
}

/// Sorts the series' labels, then checks them; `None` when the series is valid.
fn validate(pairs: &mut [(&str, &str)], limits: &LabelLimits) -> Option<SeriesProblem> {
    if pairs.len() > limits.max_labels {
        return Some(SeriesProblem::TooManyLabels {
            count: pairs.len(),
            limit: limits.max_labels,
        });
    }
    // Senders almost always send sorted labels: one comparison of each neighbour finds both
    // order and duplicates, and only an unsorted series pays for a sort and a second look.
    let mut dup_at = None;
    let mut sorted = true;
    for i in 1..pairs.len() {
        match pairs[i - 1].0.cmp(pairs[i].0) {
            std::cmp::Ordering::Less => {}
            std::cmp::Ordering::Equal => {
                dup_at.get_or_insert(i);
            }
            std::cmp::Ordering::Greater => {
                sorted = false;
                break;
            }
        }
    }
    if !sorted {
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
        dup_at = (1..pairs.len()).find(|&i| pairs[i - 1].0 == pairs[i].0);
    }
    let mut has_name = false;
    for (i, (n, v)) in pairs.iter().enumerate() {
        if n.is_empty() {
            return Some(SeriesProblem::EmptyLabelName);
        }
        if n.len() > limits.max_name_bytes {
            return Some(SeriesProblem::NameTooLong {
                len: n.len(),
                limit: limits.max_name_bytes,
            });
        }
        if v.len() > limits.max_value_bytes {
            return Some(SeriesProblem::ValueTooLong {
                len: v.len(),
                limit: limits.max_value_bytes,
            });
        }
        if dup_at == Some(i) {
            return Some(SeriesProblem::DuplicateLabel((*n).to_owned()));
        }
        has_name |= *n == METRIC_NAME && !v.is_empty();
    }
    (!has_name).then_some(SeriesProblem::MissingName)
}

/// Finishes a series whose labels were pushed from `label_start`: drops empty-valued labels (in
/// Prometheus an empty value is the same as no label), validates, and records the entry.
fn finish_series<'a>(
    batch: &mut Batch<'a>,
    (label_start, sample_start): (usize, usize),
    mut problem: Option<SeriesProblem>,
    (histograms, exemplars): (u64, u64),
    rules: Rules<'_>,
    allowance: &mut Allowance<'_>,
) -> Result<(), WireError> {
    let mut keep = label_start;
    for i in label_start..batch.labels.len() {
        if !batch.labels[i].1.is_empty() || batch.labels[i].0 == METRIC_NAME {
            batch.labels[keep] = batch.labels[i];
            keep += 1;
        }
    }
    batch.labels.truncate(keep);
    if problem.is_none() {
        problem = validate(&mut batch.labels[label_start..], rules.limits);
        // Refused by the filter: counted, and its labels and samples given back at once, so
        // the batch holds only what the store will see.
        if problem.is_none() && !rules.filter.keep(&batch.labels[label_start..]) {
            drop_unmatched(batch, (label_start, sample_start), (histograms, exemplars));
            return Ok(());
        }
    }
    let entry = SeriesEntry {
        labels: label_start..batch.labels.len(),
        samples: sample_start..batch.samples.len(),
        histograms,
        exemplars,
        problem,
    };
    allowance.push(&mut batch.series, entry)
}

/// Decodes a remote-write 1.0 `prometheus.WriteRequest`, keeping every valid series.
#[cfg(test)]
pub(crate) fn decode_v1<'a>(
    body: &'a [u8],
    limits: &LabelLimits,
    allowance: &mut Allowance<'_>,
) -> Result<Batch<'a>, WireError> {
    decode_v1_into(
        body,
        Rules {
            limits,
            filter: &KeepAll,
        },
        allowance,
        Spare::default(),
    )
}

/// Decodes a remote-write 1.0 `prometheus.WriteRequest`, keeping the valid series that
/// `rules.filter` keeps, into `spare`'s vectors (see [`Batch::into_spare`]). Capacity they
/// already have is not asked of `allowance`.
pub(crate) fn decode_v1_into<'a>(
    body: &'a [u8],
    rules: Rules<'_>,
    allowance: &mut Allowance<'_>,
    spare: Spare,
) -> Result<Batch<'a>, WireError> {
    let mut batch = Batch::from_spare(spare);
    let mut raw = Vec::new();
    let mut r = Reader::new(body, "WriteRequest");
    while !r.done() {
        match r.key()? {
            (1, w) => {
                r.expect(1, w, LEN)?;
                decode_series_v1(r.bytes()?, &mut raw, &mut batch, rules, allowance)?;
            }
            (3, w) => {
                r.expect(3, w, LEN)?;
                r.bytes()?;
                batch.metadata += 1;
            }
            (f, w) => r.skip(f, w)?,
        }
    }
    Ok(batch)
}

/// Label names and values as sent, before their UTF-8 is checked.
type RawLabels<'a> = Vec<(&'a [u8], &'a [u8])>;

/// One `Label` in the form nearly every sender writes it, at `p`: `0x0a len 0x0a l1 name 0x12 l2
/// value`, each length one byte. Returns the ranges of its name and value and where the next
/// field starts, or `None` for anything else.
#[inline]
fn compact_label(buf: &[u8], p: usize) -> Option<(Range<usize>, Range<usize>, usize)> {
    let [0x0a, len, 0x0a, l1, ..] = *buf.get(p..)? else {
        return None;
    };
    let (len, l1) = (usize::from(len), usize::from(l1));
    // The next field's place comes from the first bytes alone, so a walk over the labels need
    // not wait for each label's inner bytes before it reads the next.
    let next = p + 2 + len;
    let name = p + 4..p + 4 + l1;
    let [0x12, l2] = *buf.get(name.end..name.end + 2)? else {
        return None;
    };
    let value = name.end + 2..name.end + 2 + usize::from(l2);
    let short = len < 0x80 && l1 < 0x80 && l2 < 0x80 && value.end == next;
    (short && next <= buf.len()).then_some((name, value, next))
}

/// Decodes a series sent as nearly every sender sends one: labels first, in [`compact_label`]'s
/// form, sorted, without repeats, within the limits, then its samples, and nothing else.
/// Returns false, having kept nothing, for any other series, which [`decode_series_v1`]'s
/// general path then decodes and names the problem of.
///
/// Such a series is decided by its metric name before anything is built for it, so a dropped
/// one costs only this scan. Its labels' bytes, tags and lengths included, are checked as UTF-8
/// in one pass, and then every name and value is UTF-8 on its own: in valid UTF-8, a position
/// is a character boundary when the byte before it or at it is ASCII, and each name and value
/// starts after its one-byte length and ends before a tag or at the end of the labels.
#[inline]
fn decode_compact_series_v1<'a>(
    buf: &'a [u8],
    batch: &mut Batch<'a>,
    rules: Rules<'_>,
    allowance: &mut Allowance<'_>,
) -> Result<bool, WireError> {
    let limits = rules.limits;
    let (mut p, mut count) = (0, 0);
    let mut prev: &[u8] = b"";
    let mut name = None;
    while let Some((name_at, value_at, next)) = compact_label(buf, p) {
        let (n, v) = (&buf[name_at], &buf[value_at.clone()]);
        if v.is_empty() {
            // An empty value is an absent label, but an empty metric name is a problem.
            if n == METRIC_NAME.as_bytes() {
                return Ok(false);
            }
        } else {
            count += 1;
            // Strictly after the previous name (the first name only needs to be non-empty);
            // the first bytes settle nearly every comparison without a call to memcmp.
            let after = match prev.first().cmp(&n.first()) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Greater => false,
                std::cmp::Ordering::Equal => prev < n,
            };
            if !after || n.len() > limits.max_name_bytes || v.len() > limits.max_value_bytes {
                return Ok(false);
            }
            if n == METRIC_NAME.as_bytes() {
                name = Some(value_at);
            }
            prev = n;
        }
        p = next;
    }
    let labels_end = p;
    let Some(name) = name.filter(|_| count <= limits.max_labels) else {
        return Ok(false);
    };
    let sample_start = batch.samples.len();
    while let [0x12, len, ref rest @ ..] = *buf.get(p..).unwrap_or_default()
        && len < 0x80
        && let Some(Ok(sample)) = rest.get(..usize::from(len)).map(decode_sample)
    {
        allowance.push(&mut batch.samples, sample)?;
        p += 2 + usize::from(len);
    }
    let region = (p == buf.len())
        .then(|| std::str::from_utf8(&buf[..labels_end]).ok())
        .flatten();
    let Some(region) = region else {
        batch.samples.truncate(sample_start);
        return Ok(false);
    };
    // Text by the argument above: the fuzz target checks it.
    let text = |at: Range<usize>| {
        let s = region.get(at);
        debug_assert!(s.is_some(), "a compact label is text");
        s.unwrap_or_default()
    };
    let verdict = rules.filter.by_name(text(name));
    let label_start = batch.labels.len();
    if verdict != Some(false) {
        let mut p = 0;
        while let Some((n, v, next)) = compact_label(&buf[..labels_end], p) {
            let (n, v) = (text(n), text(v));
            if !v.is_empty() || n == METRIC_NAME {
                allowance.push(&mut batch.labels, (n, v))?;
            }
            p = next;
        }
    }
    if verdict == Some(false)
        || (verdict.is_none() && !rules.filter.keep(&batch.labels[label_start..]))
    {
        drop_unmatched(batch, (label_start, sample_start), (0, 0));
        return Ok(true);
    }
    let entry = SeriesEntry {
        labels: label_start..batch.labels.len(),
        samples: sample_start..batch.samples.len(),
        histograms: 0,
        exemplars: 0,
        problem: None,
    };
    allowance.push(&mut batch.series, entry)?;
    Ok(true)
}

fn decode_series_v1<'a>(
    buf: &'a [u8],
    raw: &mut RawLabels<'a>,
    batch: &mut Batch<'a>,
    rules: Rules<'_>,
    allowance: &mut Allowance<'_>,
) -> Result<(), WireError> {
    if decode_compact_series_v1(buf, batch, rules, allowance)? {
        return Ok(());
    }
    // Any other series: labels in any order and form, among the other fields, each checked.
    let (label_start, sample_start) = (batch.labels.len(), batch.samples.len());
    let (mut histograms, mut exemplars) = (0, 0);
    raw.clear();
    let mut r = Reader::new(buf, "TimeSeries");
    while !r.done() {
        match r.key()? {
            (1, w) => {
                r.expect(1, w, LEN)?;
                allowance.push(raw, split_label(r.bytes()?)?)?;
            }
            (2, w) => {
                r.expect(2, w, LEN)?;
                allowance.push(&mut batch.samples, decode_sample(r.bytes()?)?)?;
            }
            (3, w) => {
                r.expect(3, w, LEN)?;
                r.bytes()?;
                exemplars += 1;
            }
            (4, w) => {
                r.expect(4, w, LEN)?;
                r.bytes()?;
                histograms += 1;
            }
            (f, w) => r.skip(f, w)?,
        }
    }
    let mut problem = None;
    for &(name, value) in raw.iter() {
        match (std::str::from_utf8(name), std::str::from_utf8(value)) {
            (Ok(n), Ok(v)) => allowance.push(&mut batch.labels, (n, v))?,
            _ => problem = problem.or(Some(SeriesProblem::InvalidUtf8)),
        }
    }
    finish_series(
        batch,
        (label_start, sample_start),
        problem,
        (histograms, exemplars),
        rules,
        allowance,
    )
}

/// Counts a valid series the filter refused and gives back what the batch held of it.
fn drop_unmatched(
    batch: &mut Batch<'_>,
    (label_start, sample_start): (usize, usize),
    (histograms, exemplars): (u64, u64),
) {
    let u = &mut batch.unmatched;
    u.series += 1;
    u.samples += (batch.samples.len() - sample_start) as u64;
    u.histograms += histograms;
    u.exemplars += exemplars;
    batch.labels.truncate(label_start);
    batch.samples.truncate(sample_start);
}

/// A `Label`'s name and value.
fn split_label(label: &[u8]) -> Result<(&[u8], &[u8]), WireError> {
    let mut lr = Reader::new(label, "Label");
    let (mut name, mut value): (&[u8], &[u8]) = (b"", b"");
    while !lr.done() {
        match lr.key()? {
            (1, w) => {
                lr.expect(1, w, LEN)?;
                name = lr.bytes()?;
            }
            (2, w) => {
                lr.expect(2, w, LEN)?;
                value = lr.bytes()?;
            }
            (f, w) => lr.skip(f, w)?,
        }
    }
    Ok((name, value))
}

/// Decodes a remote-write 2.0 `io.prometheus.write.v2.Request`, keeping every valid series.
#[cfg(test)]
pub(crate) fn decode_v2<'a>(
    body: &'a [u8],
    limits: &LabelLimits,
    allowance: &mut Allowance<'_>,
) -> Result<Batch<'a>, WireError> {
    decode_v2_into(
        body,
        Rules {
            limits,
            filter: &KeepAll,
        },
        allowance,
        Spare::default(),
    )
}

/// Decodes a remote-write 2.0 `io.prometheus.write.v2.Request`, keeping the valid series that
/// `rules.filter` keeps, into `spare`'s vectors (see [`Batch::into_spare`]).
pub(crate) fn decode_v2_into<'a>(
    body: &'a [u8],
    rules: Rules<'_>,
    allowance: &mut Allowance<'_>,
    spare: Spare,
) -> Result<Batch<'a>, WireError> {
    // Symbols may come after the series on the wire: collect them first.
    let mut symbols: Vec<&'a [u8]> = Vec::new();
    let mut series_bufs: Vec<&'a [u8]> = Vec::new();
    let mut r = Reader::new(body, "Request");
    while !r.done() {
        match r.key()? {
            (4, w) => {
                r.expect(4, w, LEN)?;
                allowance.push(&mut symbols, r.bytes()?)?;
            }
            (5, w) => {
                r.expect(5, w, LEN)?;
                allowance.push(&mut series_bufs, r.bytes()?)?;
            }
            (f, w) => r.skip(f, w)?,
        }
    }
    // The spec reserves symbol 0 for the empty string; a request that does otherwise was
    // written by a sender whose references cannot be trusted.
    if symbols.first().is_some_and(|s| !s.is_empty()) {
        return Err(WireError::FirstSymbolNotEmpty);
    }
    let mut batch = Batch::from_spare(spare);
    let mut refs: Vec<u64> = Vec::new();
    for buf in series_bufs {
        decode_series_v2(buf, &symbols, &mut refs, &mut batch, rules, allowance)?;
    }
    Ok(batch)
}

/// Appends a packed or single varint field's values, as 64-bit values: a reference is checked
/// against the symbols table at its full width, never truncated into range.
fn push_varints(
    buf: &[u8],
    out: &mut Vec<u64>,
    allowance: &mut Allowance<'_>,
) -> Result<(), WireError> {
    let mut r = Reader::new(buf, "labels_refs");
    while !r.done() {
        allowance.push(out, r.varint()?)?;
    }
    Ok(())
}

/// The symbol a reference names, as UTF-8.
fn symbol<'a>(
    symbols: &[&'a [u8]],
    what: &'static str,
    index: u64,
) -> Result<&'a str, SeriesProblem> {
    usize::try_from(index)
        .ok()
        .and_then(|i| symbols.get(i))
        .ok_or(SeriesProblem::SymbolOutOfRange {
            what,
            index,
            len: symbols.len(),
        })
        .and_then(|b| std::str::from_utf8(b).map_err(|_| SeriesProblem::InvalidUtf8))
}

/// Checks a label-reference list: pairs of references, each in the symbols table.
fn check_label_refs(
    symbols: &[&[u8]],
    what: &'static str,
    refs: &[u64],
) -> Result<(), SeriesProblem> {
    if refs.len() % 2 != 0 {
        return Err(SeriesProblem::OddLabelRefs {
            what,
            len: refs.len(),
        });
    }
    refs.iter()
        .try_for_each(|&r| symbol(symbols, what, r).map(drop))
}

/// One side (negative or positive) of a native histogram, checked as it is read: nothing is held
/// per bucket, so a histogram costs no memory beyond its bytes.
#[derive(Default)]
struct HistogramSide {
    span_lengths: u64,
    /// A span after the first with a negative offset.
    bad_offset: bool,
    spans: usize,
    buckets: u64,
    /// The running absolute count of an integer histogram's delta-encoded buckets.
    count: i64,
    negative: bool,
    total: f64,
}

impl HistogramSide {
    fn span(&mut self, buf: &[u8]) -> Result<(), WireError> {
        let mut r = Reader::new(buf, "BucketSpan");
        while !r.done() {
            match r.key()? {
                (1, VARINT) => {
                    let offset = zigzag(r.varint()?);
                    self.bad_offset |= self.spans > 0 && offset < 0;
                }
                (2, VARINT) => self.span_lengths += r.varint()? & u64::from(u32::MAX),
                (f, w) => r.skip(f, w)?,
            }
        }
        self.spans += 1;
        Ok(())
    }

    /// An integer histogram's bucket, as the delta from the previous one.
    fn delta(&mut self, d: i64) {
        self.buckets += 1;
        self.count = self.count.saturating_add(d);
        self.negative |= self.count < 0;
        self.total += self.count as f64;
    }

    /// A float histogram's bucket count.
    fn absolute(&mut self, c: f64) {
        self.buckets += 1;
        self.negative |= c < 0.0;
        self.total += c;
    }

    /// The bucket counts' total, or what is wrong with them, as Prometheus validates them: spans
    /// covering exactly the buckets sent, and no bucket count below zero.
    fn total(&self) -> Result<f64, &'static str> {
        if self.span_lengths != self.buckets {
            return Err("its spans do not cover exactly its buckets");
        }
        if self.bad_offset {
            return Err("a span after the first has a negative offset");
        }
        if self.negative {
            return Err("a bucket count is negative");
        }
        Ok(self.total)
    }
}

fn zigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Checks a native histogram as Prometheus validates one before appending it: each side's spans
/// match its buckets, no bucket count is negative, and an integer histogram's count equals the
/// sum of its buckets and zero bucket (or is at least that sum when its sum is NaN). A float
/// histogram's count is not compared, as Prometheus does not (float error would refuse good
/// ones).
fn check_histogram(buf: &[u8]) -> Result<Result<(), SeriesProblem>, WireError> {
    let mut r = Reader::new(buf, "Histogram");
    let (mut count, mut zero_count) = (None::<u64>, 0u64);
    let mut sum = 0.0;
    let mut sides = [HistogramSide::default(), HistogramSide::default()];
    while !r.done() {
        match r.key()? {
            (1, VARINT) => count = Some(r.varint()?),
            (2, FIXED64) => {
                count = None;
                r.fixed64()?;
            }
            (3, FIXED64) => sum = f64::from_bits(r.fixed64()?),
            (6, VARINT) => zero_count = r.varint()?,
            (f @ (8 | 11), w) => {
                r.expect(f, w, LEN)?;
                sides[usize::from(f == 11)].span(r.bytes()?)?;
            }
            (f @ (9 | 12), LEN) => {
                let mut p = Reader::new(r.bytes()?, "packed sint64");
                while !p.done() {
                    sides[usize::from(f == 12)].delta(zigzag(p.varint()?));
                }
            }
            (f @ (9 | 12), VARINT) => {
                let d = zigzag(r.varint()?);
                sides[usize::from(f == 12)].delta(d);
            }
            (f @ (10 | 13), LEN) => {
                let mut p = Reader::new(r.bytes()?, "packed double");
                while !p.done() {
                    sides[usize::from(f == 13)].absolute(f64::from_bits(p.fixed64()?));
                }
            }
            (f @ (10 | 13), FIXED64) => {
                let c = f64::from_bits(r.fixed64()?);
                sides[usize::from(f == 13)].absolute(c);
            }
            (f, w) => r.skip(f, w)?,
        }
    }
    let mut buckets = 0.0;
    for side in &sides {
        match side.total() {
            Ok(t) => buckets += t,
            Err(why) => return Ok(Err(SeriesProblem::InvalidHistogram(why))),
        }
    }
    let Some(count) = count else {
        return Ok(Ok(()));
    };
    let buckets = buckets + zero_count as f64;
    let count = count as f64;
    Ok(if sum.is_nan() && buckets > count {
        Err(SeriesProblem::InvalidHistogram(
            "its count is smaller than the sum of its buckets",
        ))
    } else if !sum.is_nan() && buckets != count {
        Err(SeriesProblem::InvalidHistogram(
            "its count differs from the sum of its buckets",
        ))
    } else {
        Ok(())
    })
}

/// A label-reference list checked as it is read: its length, and the first reference that is
/// out of range or not UTF-8.
struct RefCheck<'s, 'a> {
    symbols: &'s [&'a [u8]],
    what: &'static str,
    len: usize,
    first_bad: Option<SeriesProblem>,
}

impl<'s, 'a> RefCheck<'s, 'a> {
    fn new(symbols: &'s [&'a [u8]], what: &'static str) -> Self {
        RefCheck {
            symbols,
            what,
            len: 0,
            first_bad: None,
        }
    }

    fn add(&mut self, index: u64) {
        self.len += 1;
        if self.first_bad.is_none()
            && let Err(p) = symbol(self.symbols, self.what, index)
        {
            self.first_bad = Some(p);
        }
    }

    /// As [`check_label_refs`] answers for the same references.
    fn finish(self, pairs: bool) -> Result<(), SeriesProblem> {
        if pairs && self.len % 2 != 0 {
            return Err(SeriesProblem::OddLabelRefs {
                what: self.what,
                len: self.len,
            });
        }
        self.first_bad.map_or(Ok(()), Err)
    }
}

/// Checks an exemplar's label references (`labels_refs`, field 1).
fn check_exemplar(buf: &[u8], symbols: &[&[u8]]) -> Result<Result<(), SeriesProblem>, WireError> {
    let mut refs = RefCheck::new(symbols, "an exemplar");
    let mut r = Reader::new(buf, "Exemplar");
    while !r.done() {
        match r.key()? {
            (1, LEN) => {
                let mut p = Reader::new(r.bytes()?, "labels_refs");
                while !p.done() {
                    refs.add(p.varint()?);
                }
            }
            (1, VARINT) => refs.add(r.varint()?),
            (f, w) => r.skip(f, w)?,
        }
    }
    Ok(refs.finish(true))
}

/// Checks a metadata's `help_ref` (field 3) and `unit_ref` (field 4).
fn check_metadata(buf: &[u8], symbols: &[&[u8]]) -> Result<Result<(), SeriesProblem>, WireError> {
    let mut refs = RefCheck::new(symbols, "metadata");
    let mut r = Reader::new(buf, "Metadata");
    while !r.done() {
        match r.key()? {
            (3 | 4, VARINT) => refs.add(r.varint()?),
            (f, w) => r.skip(f, w)?,
        }
    }
    Ok(refs.finish(false))
}

fn decode_series_v2<'a>(
    buf: &'a [u8],
    symbols: &[&'a [u8]],
    refs: &mut Vec<u64>,
    batch: &mut Batch<'a>,
    rules: Rules<'_>,
    allowance: &mut Allowance<'_>,
) -> Result<(), WireError> {
    let (label_start, sample_start) = (batch.labels.len(), batch.samples.len());
    let (mut histograms, mut exemplars) = (0, 0);
    // The first problem of the series' histograms, exemplars or metadata.
    let mut problem: Option<SeriesProblem> = None;
    refs.clear();
    let mut r = Reader::new(buf, "TimeSeries");
    while !r.done() {
        let found = match r.key()? {
            (1, LEN) => {
                push_varints(r.bytes()?, refs, allowance)?;
                Ok(())
            }
            (1, VARINT) => {
                allowance.push(refs, r.varint()?)?;
                Ok(())
            }
            (1, w) => {
                r.expect(1, w, LEN)?;
                Ok(())
            }
            (2, w) => {
                r.expect(2, w, LEN)?;
                allowance.push(&mut batch.samples, decode_sample(r.bytes()?)?)?;
                Ok(())
            }
            (3, w) => {
                r.expect(3, w, LEN)?;
                histograms += 1;
                check_histogram(r.bytes()?)?
            }
            (4, w) => {
                r.expect(4, w, LEN)?;
                exemplars += 1;
                check_exemplar(r.bytes()?, symbols)?
            }
            (5, w) => {
                r.expect(5, w, LEN)?;
                check_metadata(r.bytes()?, symbols)?
            }
            (f, w) => {
                r.skip(f, w)?;
                Ok(())
            }
        };
        if let Err(p) = found {
            problem.get_or_insert(p);
        }
    }
    // The labels' problem comes first: it names the series.
    match check_label_refs(symbols, "series", refs) {
        Ok(()) => {
            for pair in refs.chunks_exact(2) {
                if let (Ok(n), Ok(v)) = (
                    symbol(symbols, "series", pair[0]),
                    symbol(symbols, "series", pair[1]),
                ) {
                    allowance.push(&mut batch.labels, (n, v))?;
                }
            }
        }
        Err(p) => problem = Some(p),
    }
    let counts = (histograms, exemplars);
    finish_series(
        batch,
        (label_start, sample_start),
        problem,
        counts,
        rules,
        allowance,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::proto::{v1, v2};
    use prost::Message;

    const LIMITS: LabelLimits = LabelLimits {
        max_labels: 4,
        max_name_bytes: 16,
        max_value_bytes: 16,
    };

    fn label(n: &str, v: &str) -> v1::Label {
        v1::Label {
            name: n.into(),
            value: v.into(),
        }
    }

    fn series(labels: Vec<v1::Label>, samples: &[(i64, f64)]) -> v1::TimeSeries {
        v1::TimeSeries {
            labels,
            samples: samples
                .iter()
                .map(|&(timestamp, value)| v1::Sample { value, timestamp })
                .collect(),
            ..Default::default()
        }
    }

    #[test]
    fn v1_round_trip_sorts_labels_and_keeps_special_values() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let req = v1::WriteRequest {
            timeseries: vec![series(
                vec![label("job", "a"), label("__name__", "m")],
                &[(1, f64::INFINITY), (2, stale), (3, -0.5)],
            )],
            metadata: vec![v1::MetricMetadata::default()],
        };
        let body = req.encode_to_vec();
        let b = decode_v1(&body, &LIMITS, &mut Allowance::unlimited()).expect("decodes");
        assert_eq!(b.series.len(), 1);
        assert_eq!(b.metadata, 1);
        let e = &b.series[0];
        assert_eq!(e.problem, None);
        assert_eq!(b.pairs(e), &[("__name__", "m"), ("job", "a")]);
        let s = b.samples_of(e);
        assert_eq!(s[0].v, f64::INFINITY);
        assert_eq!(s[1].v.to_bits(), 0x7ff0_0000_0000_0002);
        assert_eq!((s[2].t, s[2].v), (3, -0.5));
    }

    #[test]
    fn v1_invalid_series_are_marked_not_fatal() {
        let req = v1::WriteRequest {
            timeseries: vec![
                series(vec![label("job", "a")], &[(1, 1.0)]),
                series(
                    vec![label("__name__", "m"), label("a", "1"), label("a", "2")],
                    &[(1, 1.0)],
                ),
                series(vec![label("__name__", "m"), label("", "x")], &[(1, 1.0)]),
                series(
                    vec![label("__name__", "m"), label("v", &"x".repeat(17))],
                    &[(1, 1.0)],
                ),
                series(
                    (0..5).map(|i| label(&format!("l{i}"), "v")).collect(),
                    &[(1, 1.0)],
                ),
                series(
                    vec![label("__name__", "ok"), label("empty", "")],
                    &[(1, 1.0)],
                ),
            ],
            metadata: vec![],
        };
        let body = req.encode_to_vec();
        let b = decode_v1(&body, &LIMITS, &mut Allowance::unlimited()).expect("decodes");
        let problems: Vec<_> = b
            .series
            .iter()
            .map(|e| e.problem.as_ref().map(SeriesProblem::reason))
            .collect();
        assert_eq!(
            problems,
            [
                Some("missing_metric_name"),
                Some("duplicate_label"),
                Some("empty_label_name"),
                Some("label_value_too_long"),
                Some("too_many_labels"),
                None
            ]
        );
        assert_eq!(
            b.pairs(&b.series[5]),
            &[("__name__", "ok")],
            "empty values are absent labels"
        );
    }

    #[test]
    fn v1_non_utf8_label_is_a_series_problem() {
        // Label{name:"__name__", value:0xff}
        let mut lbl = vec![0x0a, 8];
        lbl.extend_from_slice(b"__name__");
        lbl.extend_from_slice(&[0x12, 1, 0xff]);
        let mut ts = vec![0x0a, lbl.len() as u8];
        ts.extend_from_slice(&lbl);
        let mut body = vec![0x0a, ts.len() as u8];
        body.extend_from_slice(&ts);
        let b = decode_v1(&body, &LIMITS, &mut Allowance::unlimited()).expect("wire is fine");
        assert_eq!(b.series[0].problem, Some(SeriesProblem::InvalidUtf8));
    }

    /// Keeps series named `keep*`, drops `drop*`, and lets the labels decide the rest (kept
    /// when they have `job="k"`); `by_name` off forces every series through `keep`.
    struct ByName {
        by_name: bool,
    }

    impl Filter for ByName {
        fn by_name(&self, name: &str) -> Option<bool> {
            if !self.by_name {
                return None;
            }
            if name.starts_with("keep") {
                Some(true)
            } else if name.starts_with("drop") {
                Some(false)
            } else {
                None
            }
        }

        fn keep(&self, pairs: &[(&str, &str)]) -> bool {
            let name = pairs.iter().find(|(n, _)| *n == METRIC_NAME).map(|p| p.1);
            let by_name = ByName { by_name: true }.by_name(name.unwrap_or(""));
            by_name.unwrap_or_else(|| pairs.contains(&("job", "k")))
        }
    }

    /// A kept or invalid series: its labels, its problem and its number of samples.
    type Sifted<'a> = (Vec<(&'a str, &'a str)>, Option<SeriesProblem>, usize);

    /// Each series' labels and problem, and the unmatched tally.
    fn sift(body: &[u8], by_name: bool) -> (Vec<Sifted<'_>>, Unmatched) {
        let rules = Rules {
            limits: &LIMITS,
            filter: &ByName { by_name },
        };
        let b = decode_v1_into(body, rules, &mut Allowance::unlimited(), Spare::default())
            .expect("decodes");
        let series = b
            .series
            .iter()
            .map(|e| {
                (
                    b.pairs(e).to_vec(),
                    e.problem.clone(),
                    b.samples_of(e).len(),
                )
            })
            .collect();
        (series, b.unmatched)
    }

    #[test]
    fn v1_the_name_first_path_decides_as_the_general_one() {
        let long = "x".repeat(200);
        let mut cases = vec![
            // Sorted and valid, decided by the name: kept, dropped, and by the labels.
            vec![label("__name__", "keep_a"), label("job", "j")],
            vec![label("__name__", "drop_a"), label("job", "j")],
            vec![label("__name__", "other"), label("job", "k")],
            vec![label("__name__", "other"), label("job", "j")],
            // Empty values are absent labels, wherever they are.
            vec![
                label("__name__", "keep_b"),
                label("a", ""),
                label("job", "j"),
            ],
            vec![
                label("__name__", "drop_b"),
                label("job", ""),
                label("job", "k"),
            ],
            vec![
                label("__name__", "other"),
                label("job", "k"),
                label("z", ""),
            ],
            // Unsorted, repeated, empty or missing names: the general path's answers.
            vec![label("job", "k"), label("__name__", "other")],
            vec![
                label("__name__", "drop_c"),
                label("a", "1"),
                label("a", "2"),
            ],
            vec![label("__name__", "drop_d"), label("", "x")],
            vec![label("__name__", ""), label("job", "k")],
            vec![label("job", "k")],
            vec![label("__name__", "drop_e"), label("v", &long)],
            (0..5).map(|i| label(&format!("l{i}"), "v")).collect(),
            // Non-ASCII text, and a value past 127 bytes (two-byte lengths).
            vec![label("__name__", "keep_é"), label("job", "ü")],
            vec![
                label("__name__", "other"),
                label("job", "k"),
                label("x", &long[..130]),
            ],
        ];
        cases.push(vec![label("__name__", "drop_f"), label("y", "")]);
        let req = v1::WriteRequest {
            timeseries: cases
                .into_iter()
                .map(|labels| series(labels, &[(1, 1.0), (0, 0.0)]))
                .collect(),
            metadata: vec![],
        };
        let body = req.encode_to_vec();
        let (fast, fast_unmatched) = sift(&body, true);
        let (general, general_unmatched) = sift(&body, false);
        assert_eq!(fast, general);
        assert_eq!(fast_unmatched, general_unmatched);
        let names: Vec<_> = fast
            .iter()
            .map(|(p, problem, _)| {
                (
                    p.first().map(|l| l.1),
                    problem.as_ref().map(SeriesProblem::reason),
                )
            })
            .collect();
        assert_eq!(
            names,
            [
                (Some("keep_a"), None),
                (Some("other"), None),
                (Some("keep_b"), None),
                (Some("other"), None),
                (Some("other"), None),
                (Some("drop_c"), Some("duplicate_label")),
                (Some("x"), Some("empty_label_name")),
                (Some(""), Some("missing_metric_name")),
                (Some("k"), Some("missing_metric_name")),
                (Some("drop_e"), Some("label_value_too_long")),
                (Some("v"), Some("too_many_labels")),
                (Some("keep_é"), None),
                (Some("other"), Some("label_value_too_long")),
            ]
        );
        assert_eq!(fast_unmatched.series, 4);
        assert_eq!(fast_unmatched.samples, 8);
    }

    /// A length-delimited field: its tag (`key`, as many bytes as given) and its body.
    fn field(key: &[u8], body: &[u8]) -> Vec<u8> {
        let mut out = key.to_vec();
        let mut len = body.len();
        while len >= 0x80 {
            out.push(0x80 | (len & 0x7f) as u8);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(body);
        out
    }

    #[test]
    fn v1_labels_in_any_layout_decode_as_in_the_usual_one() {
        const WIDE: LabelLimits = LabelLimits {
            max_labels: 4,
            max_name_bytes: 256,
            max_value_bytes: 256,
        };
        let long = "é".repeat(65); // 130 bytes: two-byte lengths
        let name = |v: &str| {
            field(
                &[0x0a],
                &[field(&[0x0a], b"__name__"), field(&[0x12], v.as_bytes())].concat(),
            )
        };
        let job = field(
            &[0x0a],
            &[field(&[0x0a], b"job"), field(&[0x12], long.as_bytes())].concat(),
        );
        // The value before the name inside the Label, a tag of two bytes (0x8a 0x00 is field 1,
        // length-delimited, not minimally encoded), and a sample between the labels.
        let job_swapped = field(
            &[0x0a],
            &[field(&[0x12], long.as_bytes()), field(&[0x0a], b"job")].concat(),
        );
        let job_long_tag = field(
            &[0x8a, 0x00],
            &[field(&[0x0a], b"job"), field(&[0x12], long.as_bytes())].concat(),
        );
        let sample = field(
            &[0x12],
            &[&[0x09][..], &2.5f64.to_le_bytes(), &[0x10, 7]].concat(),
        );
        let layouts = [
            [name("keep_ü"), job.clone(), sample.clone()].concat(),
            [name("keep_ü"), sample.clone(), job.clone()].concat(),
            [name("keep_ü"), job_swapped, sample.clone()].concat(),
            [name("keep_ü"), job_long_tag, sample.clone()].concat(),
            [sample.clone(), name("keep_ü"), job.clone()].concat(),
        ];
        let rules = Rules {
            limits: &WIDE,
            filter: &ByName { by_name: true },
        };
        for (i, ts) in layouts.iter().enumerate() {
            let body = field(&[0x0a], ts);
            let b = decode_v1_into(&body, rules, &mut Allowance::unlimited(), Spare::default())
                .expect("decodes");
            let e = &b.series[0];
            assert_eq!(e.problem, None, "layout {i}");
            assert_eq!(
                b.pairs(e),
                [("__name__", "keep_ü"), ("job", long.as_str())],
                "layout {i}"
            );
            assert_eq!(b.samples_of(e), [Sample { t: 7, v: 2.5 }], "layout {i}");
        }
        // A value cut inside a character, whose next byte (a two-byte tag's first) completes it:
        // the labels' bytes together are UTF-8, the value alone is not.
        let cut = field(
            &[0x0a],
            &[field(&[0x0a], b"__name__"), field(&[0x12], b"keep_\xc3")].concat(),
        );
        let next = field(
            &[0x8a, 0x00],
            &[field(&[0x0a], b"job"), field(&[0x12], b"k")].concat(),
        );
        let ts = [cut, next].concat();
        assert!(
            std::str::from_utf8(&ts[2..]).is_ok(),
            "the labels' bytes are UTF-8"
        );
        let body = field(&[0x0a], &ts);
        let b = decode_v1_into(&body, rules, &mut Allowance::unlimited(), Spare::default())
            .expect("decodes");
        assert_eq!(b.series[0].problem, Some(SeriesProblem::InvalidUtf8));
    }

    #[test]
    fn a_spare_batch_decodes_the_same_into_the_same_allocations() {
        let req = v1::WriteRequest {
            timeseries: (0..50)
                .map(|i| {
                    let name = if i % 2 == 0 { "keep_a" } else { "drop_a" };
                    series(
                        vec![label("__name__", name), label("job", "j")],
                        &[(i, 1.0)],
                    )
                })
                .collect(),
            metadata: vec![],
        };
        let body = req.encode_to_vec();
        let rules = Rules {
            limits: &LIMITS,
            filter: &ByName { by_name: true },
        };
        let first = decode_v1_into(&body, rules, &mut Allowance::unlimited(), Spare::default())
            .expect("decodes");
        let want = (first.labels.clone(), first.samples.clone(), first.unmatched);
        let spare = first.into_spare();
        let held = (
            spare.labels.as_ptr().addr(),
            spare.samples.as_ptr().addr(),
            spare.series.as_ptr().addr(),
        );
        assert!(spare.bytes() > 0 && spare.labels.is_empty() && spare.series.is_empty());
        let mut asked = 0;
        let mut grow = |bytes| {
            asked += bytes;
            true
        };
        let second =
            decode_v1_into(&body, rules, &mut Allowance::new(&mut grow), spare).expect("decodes");
        assert_eq!(
            (
                second.labels.clone(),
                second.samples.clone(),
                second.unmatched
            ),
            want
        );
        assert_eq!(second.series.len(), 25);
        assert_eq!(
            (
                second.labels.as_ptr().addr(),
                second.samples.as_ptr().addr(),
                second.series.as_ptr().addr(),
            ),
            held,
            "the allocations are reused"
        );
        drop(second);
        assert_eq!(asked, 0, "capacity held already is not asked for again");
    }

    #[test]
    fn corrupt_protobuf_is_a_wire_error() {
        let req = v1::WriteRequest {
            timeseries: vec![series(vec![label("__name__", "m")], &[(1, 1.0)])],
            metadata: vec![],
        };
        let body = req.encode_to_vec();
        assert!(matches!(
            decode_v1(
                &body[..body.len() - 3],
                &LIMITS,
                &mut Allowance::unlimited()
            ),
            Err(WireError::Truncated(_))
        ));
        assert!(decode_v1(&[0xff; 12], &LIMITS, &mut Allowance::unlimited()).is_err());
        assert!(
            decode_v1(&[0x0f], &LIMITS, &mut Allowance::unlimited()).is_err(),
            "wire type 7 is not protobuf"
        );
    }

    #[test]
    fn v2_symbols_refs_and_errors() {
        let req = v2::Request {
            symbols: vec![
                "".into(),
                "__name__".into(),
                "m".into(),
                "job".into(),
                "x".into(),
            ],
            timeseries: vec![
                v2::TimeSeries {
                    labels_refs: vec![1, 2, 3, 4],
                    samples: vec![v2::Sample {
                        value: 2.5,
                        timestamp: 7,
                        start_timestamp: 0,
                    }],
                    exemplars: vec![v2::Exemplar::default()],
                    histograms: vec![v2::Histogram::default()],
                    created_timestamp: 99,
                    ..Default::default()
                },
                v2::TimeSeries {
                    labels_refs: vec![1, 9],
                    samples: vec![v2::Sample::default()],
                    ..Default::default()
                },
                v2::TimeSeries {
                    labels_refs: vec![1],
                    ..Default::default()
                },
            ],
        };
        let body = req.encode_to_vec();
        let b = decode_v2(&body, &LIMITS, &mut Allowance::unlimited()).expect("decodes");
        let e = &b.series[0];
        assert_eq!(e.problem, None);
        assert_eq!(b.pairs(e), &[("__name__", "m"), ("job", "x")]);
        assert_eq!((e.histograms, e.exemplars), (1, 1));
        assert_eq!(b.samples_of(e)[0], Sample { t: 7, v: 2.5 });
        assert_eq!(
            b.series[1].problem,
            Some(SeriesProblem::SymbolOutOfRange {
                what: "series",
                index: 9,
                len: 5
            })
        );
        assert_eq!(
            b.series[2].problem,
            Some(SeriesProblem::OddLabelRefs {
                what: "series",
                len: 1
            })
        );
    }

    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    /// A 2.0 request of one series, `symbols` and the series' fields as given.
    fn v2_request(symbols: &[&str], series: v2::TimeSeries) -> Vec<u8> {
        v2::Request {
            symbols: symbols.iter().map(|s| (*s).to_owned()).collect(),
            timeseries: vec![series],
        }
        .encode_to_vec()
    }

    const SYMBOLS: &[&str] = &["", "__name__", "m", "help"];

    fn problem_of(body: &[u8]) -> Option<SeriesProblem> {
        decode_v2(body, &LIMITS, &mut Allowance::unlimited())
            .expect("decodes")
            .series[0]
            .problem
            .clone()
    }

    #[test]
    fn v2_symbol_zero_must_be_the_empty_string() {
        let series = v2::TimeSeries {
            labels_refs: vec![1, 2],
            ..Default::default()
        };
        let body = v2_request(&["x", "__name__", "m"], series);
        assert!(matches!(
            decode_v2(&body, &LIMITS, &mut Allowance::unlimited()),
            Err(WireError::FirstSymbolNotEmpty)
        ));
    }

    #[test]
    fn v2_references_are_checked_at_64_bits_in_labels_exemplars_and_metadata() {
        // labels_refs [1, 2^32 + 2]: truncated to 32 bits it would be symbol 2, "m".
        let mut packed = Vec::new();
        varint(1, &mut packed);
        varint((1 << 32) + 2, &mut packed);
        let mut series = vec![(1 << 3) | 2];
        varint(packed.len() as u64, &mut series);
        series.extend(&packed);
        let mut body = Vec::new();
        for s in SYMBOLS {
            body.push((4 << 3) | 2);
            varint(s.len() as u64, &mut body);
            body.extend(s.as_bytes());
        }
        body.push((5 << 3) | 2);
        varint(series.len() as u64, &mut body);
        body.extend(&series);
        assert_eq!(
            problem_of(&body),
            Some(SeriesProblem::SymbolOutOfRange {
                what: "series",
                index: (1 << 32) + 2,
                len: 4
            })
        );

        let named = || v2::TimeSeries {
            labels_refs: vec![1, 2],
            ..Default::default()
        };
        let exemplar = v2::TimeSeries {
            exemplars: vec![v2::Exemplar {
                labels_refs: vec![1, 7],
                ..Default::default()
            }],
            ..named()
        };
        assert_eq!(
            problem_of(&v2_request(SYMBOLS, exemplar)),
            Some(SeriesProblem::SymbolOutOfRange {
                what: "an exemplar",
                index: 7,
                len: 4
            })
        );
        let odd = v2::TimeSeries {
            exemplars: vec![v2::Exemplar {
                labels_refs: vec![1],
                ..Default::default()
            }],
            ..named()
        };
        assert!(matches!(
            problem_of(&v2_request(SYMBOLS, odd)),
            Some(SeriesProblem::OddLabelRefs { .. })
        ));
        let metadata = |help_ref, unit_ref| v2::TimeSeries {
            metadata: Some(v2::Metadata {
                r#type: 1,
                help_ref,
                unit_ref,
            }),
            ..named()
        };
        assert_eq!(problem_of(&v2_request(SYMBOLS, metadata(3, 0))), None);
        assert_eq!(
            problem_of(&v2_request(SYMBOLS, metadata(12, 0))),
            Some(SeriesProblem::SymbolOutOfRange {
                what: "metadata",
                index: 12,
                len: 4
            })
        );
        assert!(problem_of(&v2_request(SYMBOLS, metadata(0, 4))).is_some());
    }

    #[test]
    fn v2_native_histograms_are_validated_as_prometheus_does() {
        let span = |offset, length| v2::BucketSpan { offset, length };
        // Buckets 2, 3 (deltas 2, +1) and a zero bucket of 1: count 6.
        let good = || v2::Histogram {
            count: Some(v2::histogram::Count::CountInt(6)),
            sum: 10.0,
            zero_count: Some(v2::histogram::ZeroCount::ZeroCountInt(1)),
            positive_spans: vec![span(0, 2)],
            positive_deltas: vec![2, 1],
            ..Default::default()
        };
        let with = |h: v2::Histogram| {
            problem_of(&v2_request(
                SYMBOLS,
                v2::TimeSeries {
                    labels_refs: vec![1, 2],
                    histograms: vec![h],
                    ..Default::default()
                },
            ))
        };
        assert_eq!(with(good()), None);
        let reason = |h| with(h).map(|p| p.to_string()).unwrap_or_default();
        assert!(
            reason(v2::Histogram {
                count: Some(v2::histogram::Count::CountInt(7)),
                ..good()
            })
            .contains("differs from the sum of its buckets")
        );
        // With a NaN sum, the count may exceed the buckets, never fall short of them.
        let nan = |count| v2::Histogram {
            count: Some(v2::histogram::Count::CountInt(count)),
            sum: f64::NAN,
            ..good()
        };
        assert_eq!(with(nan(7)), None);
        assert!(reason(nan(5)).contains("smaller than the sum"));
        assert!(
            reason(v2::Histogram {
                positive_spans: vec![span(0, 3)],
                ..good()
            })
            .contains("spans do not cover")
        );
        assert!(
            reason(v2::Histogram {
                positive_deltas: vec![2, -3],
                count: Some(v2::histogram::Count::CountInt(0)),
                ..good()
            })
            .contains("negative")
        );
        assert!(
            reason(v2::Histogram {
                positive_spans: vec![span(0, 1), span(-2, 1)],
                ..good()
            })
            .contains("negative offset")
        );
        // A float histogram's count is not compared with its buckets.
        let float = v2::Histogram {
            count: Some(v2::histogram::Count::CountFloat(100.0)),
            zero_count: Some(v2::histogram::ZeroCount::ZeroCountFloat(1.0)),
            positive_spans: vec![span(0, 2)],
            positive_deltas: vec![],
            positive_counts: vec![2.0, 3.0],
            ..good()
        };
        assert_eq!(with(float.clone()), None);
        assert!(
            reason(v2::Histogram {
                positive_counts: vec![2.0, -3.0],
                ..float
            })
            .contains("negative")
        );
    }

    /// What decoding holds beside the body: the capacity of every vector it grew.
    fn held(b: &Batch<'_>) -> usize {
        b.labels.capacity() * size_of::<(&str, &str)>()
            + b.samples.capacity() * size_of::<Sample>()
            + b.series.capacity() * size_of::<SeriesEntry>()
    }

    #[test]
    fn decoding_grows_only_by_what_its_allowance_grants() {
        // Empty series, labels and samples: 2 bytes each on the wire, far more decoded.
        let empty = v1::WriteRequest {
            timeseries: (0..5_000)
                .map(|_| v1::TimeSeries {
                    labels: vec![v1::Label::default(); 3],
                    samples: vec![v1::Sample::default(); 3],
                    ..Default::default()
                })
                .collect(),
            metadata: vec![],
        }
        .encode_to_vec();
        let mut unlimited = Allowance::unlimited();
        let b = decode_v1(&empty, &LIMITS, &mut unlimited).expect("decodes");
        assert_eq!((b.series.len(), b.samples.len()), (5_000, 15_000));
        // Every byte held was granted first, and the grant is not far above what is held.
        assert!(
            held(&b) <= unlimited.granted(),
            "{} > {}",
            held(&b),
            unlimited.granted()
        );
        assert!(
            unlimited.granted() > 10 * empty.len(),
            "the amplification the budget must see"
        );
        let need = unlimited.granted();
        drop(b);

        // A budget of half that refuses the request partway, having granted no more than it.
        let mut left = need / 2;
        let mut asked = 0;
        let mut grow = |bytes: usize| {
            asked += 1;
            left.checked_sub(bytes).map(|l| left = l).is_some()
        };
        let mut half = Allowance::new(&mut grow);
        assert!(matches!(
            decode_v1(&empty, &LIMITS, &mut half),
            Err(WireError::OverBudget { granted }) if granted <= need / 2
        ));
        assert!(asked < 64, "asked {asked} times: growth doubles");

        // 2.0: the symbols table and the series' references are charged too.
        let mut symbols = vec![String::new(); 20_000];
        symbols[1] = "__name__".into();
        let body = v2::Request {
            symbols,
            timeseries: vec![v2::TimeSeries {
                labels_refs: [1, 0].repeat(10_000),
                ..Default::default()
            }],
        }
        .encode_to_vec();
        let mut none = |_| false;
        assert!(matches!(
            decode_v2(&body, &LIMITS, &mut Allowance::new(&mut none)),
            Err(WireError::OverBudget { granted: 0 })
        ));
        let mut unlimited = Allowance::unlimited();
        let b = decode_v2(&body, &LIMITS, &mut unlimited).expect("decodes");
        let refs_and_symbols = (20_000 + 20_000) * 8 + 20_000 * 16;
        assert!(unlimited.granted() >= held(&b) + refs_and_symbols);
    }
}
