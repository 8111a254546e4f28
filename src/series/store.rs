//! The series store: per-series rolling windows of samples, sharded for concurrent ingest.
//!
//! Ingest appends, the evaluator selects, and a periodic sweep evicts. Each shard is a short
//! critical section behind its own mutex (no lock is ever held across I/O, an await, or training),
//! so many remote-write connections append in parallel and a feature evaluation copies out the
//! samples it needs without stopping ingest for longer than one series' copy.
//!
//! Time is event time: retention is measured back from the newest sample timestamp the store has
//! accepted, not from the wall clock, so replayed and backfilled history age the same way as live
//! data.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::labels::{Labels, METRIC_NAME};
use super::selector::Selector;

/// Prometheus's staleness marker: a NaN with this exact bit pattern. Compare bits, not values.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub fn is_stale_marker(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// One sample: a timestamp in milliseconds since the epoch and a value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t: i64,
    pub v: f64,
}

#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    /// Series beyond this count are dropped (and counted), never failing a request.
    pub max_series: usize,
    /// How far back from the newest accepted timestamp samples are kept, in milliseconds.
    pub retention_ms: i64,
}

/// What one append did with its samples; the ingest handler turns these into metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    pub appended: u64,
    /// Identical (timestamp, value) already held: an idempotent retry.
    pub duplicate: u64,
    /// A different value for a timestamp already held: ignored, as Prometheus's TSDB does.
    pub conflicting: u64,
    /// Older than the retention window: nothing can read them any more.
    pub too_old: u64,
    /// The series was new and the cardinality limit was reached.
    pub over_series_limit: u64,
    /// The append created the series.
    pub new_series: bool,
}

struct Series {
    labels: Arc<Labels>,
    samples: VecDeque<Sample>,
}

impl Series {
    /// Inserts in timestamp order; out-of-order samples within retention go to their place.
    fn insert(&mut self, s: Sample, cutoff: i64, out: &mut AppendOutcome) {
        if s.t < cutoff {
            out.too_old += 1;
            return;
        }
        match self.samples.back() {
            None => self.samples.push_back(s),
            Some(last) if s.t > last.t => self.samples.push_back(s),
            _ => {
                let pos = self.samples.partition_point(|x| x.t < s.t);
                match self.samples.get(pos) {
                    Some(held) if held.t == s.t => {
                        if held.v.to_bits() == s.v.to_bits() {
                            out.duplicate += 1;
                        } else {
                            out.conflicting += 1;
                        }
                        return;
                    }
                    _ => self.samples.insert(pos, s),
                }
            }
        }
        out.appended += 1;
    }

    fn trim(&mut self, cutoff: i64) {
        while self.samples.front().is_some_and(|s| s.t < cutoff) {
            self.samples.pop_front();
        }
    }
}

#[derive(Default)]
struct Shard {
    /// Label-set hash to the slots holding series with that hash (collisions compare labels).
    by_hash: HashMap<u64, Vec<u32>>,
    /// Metric name to slots: selectors with a pinned name read only these.
    by_name: HashMap<Box<str>, Vec<u32>>,
    slots: Vec<Option<Series>>,
    free: Vec<u32>,
}

impl Shard {
    fn find(&self, hash: u64, pairs: &[(&str, &str)]) -> Option<u32> {
        self.by_hash.get(&hash)?.iter().copied().find(|&slot| {
            self.slots[slot as usize]
                .as_ref()
                .is_some_and(|s| s.labels.iter().eq(pairs.iter().copied()))
        })
    }

    fn add(&mut self, hash: u64, labels: Labels) -> u32 {
        let name: Box<str> = labels.metric_name().into();
        let series = Series {
            labels: Arc::new(labels),
            samples: VecDeque::new(),
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(series);
                slot
            }
            None => {
                self.slots.push(Some(series));
                (self.slots.len() - 1) as u32
            }
        };
        self.by_hash.entry(hash).or_default().push(slot);
        self.by_name.entry(name).or_default().push(slot);
        slot
    }

    fn remove(&mut self, slot: u32, hash: u64) {
        let Some(series) = self.slots[slot as usize].take() else {
            return;
        };
        if let Some(v) = self.by_hash.get_mut(&hash) {
            v.retain(|&s| s != slot);
            if v.is_empty() {
                self.by_hash.remove(&hash);
            }
        }
        let name = series.labels.metric_name();
        if let Some(v) = self.by_name.get_mut(name) {
            v.retain(|&s| s != slot);
            if v.is_empty() {
                self.by_name.remove(name);
            }
        }
        self.free.push(slot);
    }
}

/// Series selected for one evaluation: label sets and their samples, in one reused buffer.
#[derive(Debug, Default)]
pub struct Selection {
    series: Vec<(Arc<Labels>, Range<usize>)>,
    samples: Vec<Sample>,
}

impl Selection {
    pub fn clear(&mut self) {
        self.series.clear();
        self.samples.clear();
    }

    pub fn len(&self) -> usize {
        self.series.len()
    }

    pub fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Every selected series with its samples in timestamp order (staleness markers included).
    pub fn iter(&self) -> impl Iterator<Item = (&Arc<Labels>, &[Sample])> + '_ {
        self.series
            .iter()
            .map(|(l, r)| (l, &self.samples[r.clone()]))
    }

    /// The `i`-th selected series (in [`Selection::iter`] order) with its samples.
    pub fn get(&self, i: usize) -> Option<(&Arc<Labels>, &[Sample])> {
        self.series
            .get(i)
            .map(|(l, r)| (l, &self.samples[r.clone()]))
    }
}

pub struct SeriesStore {
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    limits: StoreLimits,
    active: AtomicUsize,
    newest: AtomicI64,
}

const SHARDS: usize = 32;

impl SeriesStore {
    pub fn new(limits: StoreLimits) -> SeriesStore {
        SeriesStore {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            limits,
            active: AtomicUsize::new(0),
            newest: AtomicI64::new(i64::MIN),
        }
    }

    pub fn limits(&self) -> StoreLimits {
        self.limits
    }

    /// The number of series held.
    pub fn active_series(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// The newest sample timestamp accepted so far (ms), if any.
    pub fn newest_timestamp(&self) -> Option<i64> {
        let t = self.newest.load(Ordering::Relaxed);
        (t != i64::MIN).then_some(t)
    }

    fn cutoff(&self) -> i64 {
        self.newest
            .load(Ordering::Relaxed)
            .saturating_sub(self.limits.retention_ms)
    }

    fn hash_pairs(&self, pairs: &[(&str, &str)]) -> u64 {
        let mut h = self.hasher.build_hasher();
        for (n, v) in pairs {
            n.hash(&mut h);
            v.hash(&mut h);
        }
        h.finish()
    }

    fn shard(&self, hash: u64) -> MutexGuard<'_, Shard> {
        // A panic while holding a shard lock cannot leave a series half-written (every mutation
        // is a single push or insert), so a poisoned lock is still safe to use.
        self.shards[(hash >> 59) as usize % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Appends `samples` to the series with label set `pairs` (sorted by name, validated),
    /// creating the series if the cardinality limit allows.
    pub fn append(&self, pairs: &[(&str, &str)], samples: &[Sample]) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        if samples.is_empty() {
            return out;
        }
        if let Some(max_t) = samples.iter().map(|s| s.t).max() {
            self.newest.fetch_max(max_t, Ordering::Relaxed);
        }
        let cutoff = self.cutoff();
        let hash = self.hash_pairs(pairs);
        let mut shard = self.shard(hash);
        let slot = match shard.find(hash, pairs) {
            Some(slot) => slot,
            None => {
                if samples.iter().all(|s| s.t < cutoff) {
                    out.too_old = samples.len() as u64;
                    return out;
                }
                // Reserve a place under the limit before creating: concurrent appends of new
                // series in other shards must not overshoot it.
                let reserved =
                    self.active
                        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                            (n < self.limits.max_series).then_some(n + 1)
                        });
                if reserved.is_err() {
                    out.over_series_limit = samples.len() as u64;
                    return out;
                }
                out.new_series = true;
                shard.add(hash, Labels::from_sorted(pairs))
            }
        };
        let series = shard.slots[slot as usize]
            .as_mut()
            .expect("slot found by hash holds a series");
        for &s in samples {
            series.insert(s, cutoff, &mut out);
        }
        series.trim(cutoff);
        out
    }

    /// Copies every series matching `selector`, with its samples whose timestamps lie in
    /// `[from, to]` (ms, both ends included), into `out` (cleared first). Series with no sample
    /// in the range are left out.
    pub fn select(&self, selector: &Selector, from: i64, to: i64, out: &mut Selection) {
        out.clear();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let mut take = |series: &Series| {
                if !selector.matches(|n| series.labels.get(n)) {
                    return;
                }
                let Range { start: lo, end: hi } = window(&series.samples, from, to);
                if lo >= hi {
                    return;
                }
                let start = out.samples.len();
                out.samples.extend(series.samples.range(lo..hi).copied());
                out.series
                    .push((series.labels.clone(), start..out.samples.len()));
            };
            match &selector.metric_name {
                Some(name) => {
                    for &slot in shard.by_name.get(name.as_str()).into_iter().flatten() {
                        if let Some(series) = &shard.slots[slot as usize] {
                            take(series);
                        }
                    }
                }
                None => shard.slots.iter().flatten().for_each(&mut take),
            }
        }
    }

    /// Drops samples older than the retention and removes series left with none (gone stale).
    /// Returns the number of series removed.
    pub fn evict(&self) -> usize {
        let cutoff = self.cutoff();
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let mut dead = Vec::new();
            for (slot, series) in shard.slots.iter_mut().enumerate() {
                if let Some(series) = series {
                    series.trim(cutoff);
                    if series.samples.is_empty() {
                        let pairs: Vec<(&str, &str)> = series.labels.iter().collect();
                        dead.push((slot as u32, self.hash_pairs(&pairs)));
                    }
                }
            }
            for (slot, hash) in dead {
                shard.remove(slot, hash);
                removed += 1;
            }
        }
        self.active.fetch_sub(removed, Ordering::Relaxed);
        removed
    }

    /// Samples held, summed over series (for the memory metrics).
    pub fn sample_count(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock().unwrap_or_else(|e| e.into_inner());
                s.slots
                    .iter()
                    .flatten()
                    .map(|x| x.samples.len())
                    .sum::<usize>()
            })
            .sum()
    }
}

/// The index range of the samples with `from <= t <= to`. Evaluation windows sit at the newest
/// end of a series, so it is found by stepping back from that end: the steps touch only the
/// samples about to be copied, where a binary search over the whole deque would miss the cache
/// on every probe. Windows far in the past fall back to binary search.
fn window(samples: &VecDeque<Sample>, from: i64, to: i64) -> Range<usize> {
    const STEPS: usize = 32;
    let newer = samples
        .iter()
        .rev()
        .take(STEPS)
        .take_while(|s| s.t > to)
        .count();
    let hi = if newer == STEPS {
        samples.partition_point(|s| s.t <= to)
    } else {
        samples.len() - newer
    };
    let lo = hi
        - samples
            .range(..hi)
            .rev()
            .take_while(|s| s.t >= from)
            .count();
    lo..hi
}

/// The metric name of a validated label set given as sorted pairs.
pub fn metric_name_of<'a>(pairs: &[(&'a str, &'a str)]) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(n, _)| *n == METRIC_NAME)
        .map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(max_series: usize) -> SeriesStore {
        SeriesStore::new(StoreLimits {
            max_series,
            retention_ms: 60_000,
        })
    }

    fn sel(name: &str) -> Selector {
        Selector::new(Some(name), &[])
    }

    fn s(t: i64, v: f64) -> Sample {
        Sample { t, v }
    }

    #[test]
    fn out_of_order_duplicates_and_conflicts() {
        let st = store(10);
        let pairs = [("__name__", "m"), ("a", "1")];
        let o = st.append(&pairs, &[s(1000, 1.0), s(3000, 3.0)]);
        assert_eq!((o.appended, o.new_series), (2, true));
        let o = st.append(&pairs, &[s(2000, 2.0), s(3000, 3.0), s(1000, 9.0)]);
        assert_eq!((o.appended, o.duplicate, o.conflicting), (1, 1, 1));
        let mut out = Selection::default();
        st.select(&sel("m"), 0, 10_000, &mut out);
        let (_, samples) = out.iter().next().expect("one series");
        assert_eq!(samples, &[s(1000, 1.0), s(2000, 2.0), s(3000, 3.0)]);
    }

    #[test]
    fn range_is_inclusive_at_both_ends() {
        let st = store(10);
        st.append(
            &[("__name__", "m")],
            &[s(1000, 1.0), s(2000, 2.0), s(3000, 3.0)],
        );
        let mut out = Selection::default();
        st.select(&sel("m"), 1000, 2000, &mut out);
        assert_eq!(out.iter().next().expect("series").1.len(), 2);
    }

    #[test]
    fn cardinality_limit_drops_new_series_only() {
        let st = store(2);
        assert!(st.append(&[("__name__", "a")], &[s(1, 1.0)]).new_series);
        assert!(st.append(&[("__name__", "b")], &[s(1, 1.0)]).new_series);
        let o = st.append(&[("__name__", "c")], &[s(1, 1.0), s(2, 1.0)]);
        assert_eq!(o.over_series_limit, 2);
        assert_eq!(st.append(&[("__name__", "a")], &[s(2, 1.0)]).appended, 1);
        assert_eq!(st.active_series(), 2);
    }

    #[test]
    fn retention_trims_and_evicts_stale_series() {
        let st = store(10);
        st.append(&[("__name__", "old")], &[s(0, 1.0)]);
        st.append(&[("__name__", "new")], &[s(0, 1.0), s(100_000, 2.0)]);
        assert_eq!(st.append(&[("__name__", "new")], &[s(10, 5.0)]).too_old, 1);
        assert_eq!(st.evict(), 1);
        assert_eq!(st.active_series(), 1);
        assert_eq!(st.sample_count(), 1);
        // the freed slot is reused and selection by name still finds the right series
        st.append(&[("__name__", "again")], &[s(100_000, 3.0)]);
        let mut out = Selection::default();
        st.select(&sel("again"), 0, 200_000, &mut out);
        assert_eq!(out.len(), 1);
        st.select(&sel("old"), 0, 200_000, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn window_steps_back_or_searches_far_windows() {
        let samples: VecDeque<Sample> = (0..100).map(|i| s(i * 10, i as f64)).collect();
        // near the newest end: stepped
        assert_eq!(window(&samples, 950, 10_000), 95..100);
        assert_eq!(window(&samples, 900, 985), 90..99);
        // more than 32 samples newer than `to`: binary search, same answer
        assert_eq!(window(&samples, 100, 200), 10..21);
        assert_eq!(window(&samples, 101, 109), 11..11);
        assert_eq!(window(&VecDeque::new(), 0, 10), 0..0);
    }

    #[test]
    fn staleness_marker_is_kept_as_a_sample() {
        let st = store(10);
        let stale = f64::from_bits(STALE_NAN_BITS);
        st.append(&[("__name__", "m")], &[s(1, 1.0), s(2, stale)]);
        let mut out = Selection::default();
        st.select(&sel("m"), 0, 10, &mut out);
        assert!(is_stale_marker(out.iter().next().expect("series").1[1].v));
        assert!(!is_stale_marker(f64::NAN));
    }
}
