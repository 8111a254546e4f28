//! The series store: per-series rolling windows of samples, sharded for concurrent ingest.
//!
//! Ingest appends, the evaluator visits, and a periodic sweep evicts. Each shard is a short
//! critical section behind its own mutex (no lock is ever held across I/O, an await, or training),
//! so many remote-write connections append in parallel and a feature evaluation stops ingest in
//! one shard at a time, for as long as it takes to read that shard's matched series.
//!
//! A shard counts a generation, bumped whenever a series enters or leaves it, so the evaluator
//! can keep which series a selector matched ([`Postings`]) from step to step and match labels
//! again only where series came or went.
//!
//! Time is event time: retention is measured back from the newest sample timestamp the store has
//! accepted, not from the wall clock, so replayed and backfilled history age the same way as live
//! data.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::ops::Range;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::chunk::Chunk;
use super::labels::{Labels, METRIC_NAME};
use super::selector::Selector;

/// Prometheus's staleness marker: a NaN with this exact bit pattern. Compare bits, not values.
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub(crate) fn is_stale_marker(v: f64) -> bool {
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
    pub(crate) appended: u64,
    /// Identical (timestamp, value) already held: an idempotent retry.
    pub(crate) duplicate: u64,
    /// A different value for a timestamp already held: ignored, as Prometheus's TSDB does.
    pub(crate) conflicting: u64,
    /// Older than the retention window: nothing can read them any more.
    pub(crate) too_old: u64,
    /// The series was new and the cardinality limit was reached.
    pub(crate) over_series_limit: u64,
    /// The append created the series.
    pub(crate) new_series: bool,
}

/// Samples per chunk before a new one is started. A chunk decodes from its first sample, so a
/// window at the newest end costs the window plus up to a chunk before it: 32 keeps that under
/// twice a 5-minute window at a 15 s scrape (Prometheus's 120 would decode three times the
/// window at the default 15-minute retention), for a header of a few bytes per sample.
const CHUNK_SAMPLES: usize = 32;

struct Series {
    labels: Arc<Labels>,
    /// The chunk appends go to, held inline so an append reaches its bits in one step.
    head: Chunk,
    /// Full chunks, older than the head, in time order, never overlapping.
    closed: Closed,
    /// Samples older than this have left the retention, though their chunk may still be held
    /// for its newer ones: nothing reads or counts them.
    start_t: i64,
}

impl Series {
    fn new(labels: Arc<Labels>) -> Series {
        Series {
            labels,
            head: Chunk::default(),
            closed: Closed::default(),
            start_t: i64::MIN,
        }
    }

    /// Inserts in timestamp order; out-of-order samples within retention go to their place.
    /// True when the head chunk was full and closed to make room.
    fn insert(&mut self, s: Sample, cutoff: i64, out: &mut AppendOutcome) -> bool {
        if s.t < cutoff {
            out.too_old += 1;
            return false;
        }
        let mut closed_head = false;
        if self.head.is_empty() || s.t > self.head.last_t() {
            if self.head.len() >= CHUNK_SAMPLES {
                let mut full = std::mem::take(&mut self.head);
                full.shrink_to_fit();
                let closed = self.closed.vec();
                closed.reserve_exact(1);
                closed.push(full);
                closed_head = true;
            }
            self.head.push(s);
        } else if !self.insert_within(s, out) {
            return false;
        }
        out.appended += 1;
        closed_head
    }

    /// Inserts a sample no newer than the newest held, re-encoding the chunk it falls in (or
    /// before); false when a sample with its timestamp is already held (a duplicate or a
    /// conflicting value, counted).
    #[cold]
    fn insert_within(&mut self, s: Sample, out: &mut AppendOutcome) -> bool {
        let k = self.closed.partition_point(|c| c.last_t() < s.t);
        let chunk = self.closed.get_mut(k).unwrap_or(&mut self.head);
        let mut samples: Vec<Sample> = chunk.iter().collect();
        let pos = samples.partition_point(|x| x.t < s.t);
        if let Some(held) = samples.get(pos).filter(|h| h.t == s.t) {
            if held.v.to_bits() == s.v.to_bits() {
                out.duplicate += 1;
            } else {
                out.conflicting += 1;
            }
            return false;
        }
        samples.insert(pos, s);
        if samples.len() <= 2 * CHUNK_SAMPLES {
            *chunk = Chunk::from_samples(&samples);
            return true;
        }
        let (older, newer) = samples.split_at(samples.len() / 2);
        *chunk = Chunk::from_samples(newer);
        self.closed.vec().insert(k, Chunk::from_samples(older));
        true
    }

    /// Forgets samples older than `cutoff`: nothing reads or counts them from now on, and their
    /// chunks are dropped at the next [`trim`](Self::trim). Touches only the series itself, not
    /// its full chunks, which an append does not otherwise reach.
    fn forget_before(&mut self, cutoff: i64) {
        self.start_t = self.start_t.max(cutoff);
    }

    /// Forgets samples older than `cutoff`, dropping every chunk that holds only such samples.
    fn trim(&mut self, cutoff: i64) {
        self.forget_before(cutoff);
        let old = self
            .closed
            .iter()
            .take_while(|c| c.last_t() < self.start_t)
            .count();
        self.closed.drop_oldest(old);
        if self.closed.is_empty() && !self.head.is_empty() && self.head.last_t() < self.start_t {
            self.head = Chunk::default();
        }
    }

    fn is_empty(&self) -> bool {
        self.head.is_empty() && self.closed.is_empty()
    }

    /// The chunks in time order.
    fn chunks(&self) -> impl Iterator<Item = &Chunk> {
        self.closed.iter().chain(std::iter::once(&self.head))
    }

    /// Appends the samples with `from <= t <= to` (within the retention) to `out`.
    fn copy_window(&self, from: i64, to: i64, out: &mut Vec<Sample>) {
        let from = from.max(self.start_t);
        let first = self.closed.partition_point(|c| c.last_t() < from);
        for chunk in self.chunks().skip(first) {
            if chunk.is_empty() || chunk.first_t() > to {
                break;
            }
            chunk.decode_window(from, to, out);
        }
    }

    /// Appends the newest sample with `from <= t <= to` (within the retention) to `out`, if
    /// there is one: read off the head chunk when it ends by `to`, as it does at the newest
    /// step, and decoded otherwise.
    fn copy_last(&self, from: i64, to: i64, out: &mut Vec<Sample>) {
        let from = from.max(self.start_t);
        if !self.head.is_empty() && self.head.last_t() <= to {
            if self.head.last_t() >= from {
                out.push(self.head.last());
            }
            return;
        }
        let start = out.len();
        self.copy_window(from, to, out);
        if out.len() > start + 1 {
            let last = out[out.len() - 1];
            out.truncate(start);
            out.push(last);
        }
    }

    /// Samples held within the retention (the oldest chunks may hold older ones until the next
    /// trim).
    fn len(&self) -> usize {
        self.chunks()
            .map(|c| {
                if c.is_empty() || c.last_t() < self.start_t {
                    0
                } else if c.first_t() >= self.start_t {
                    c.len()
                } else {
                    c.iter().filter(|x| x.t >= self.start_t).count()
                }
            })
            .sum()
    }
}

/// A series' full chunks. Most series of a short retention never close one, so there is no room
/// at all until the first: one word in every series, where an empty `Vec` costs three.
#[derive(Default)]
// The box is the point: a thin pointer, where a `Vec` or a boxed slice is two or three words.
#[allow(clippy::box_collection)]
struct Closed(Option<Box<Vec<Chunk>>>);

impl Closed {
    /// The list, created on first use.
    fn vec(&mut self) -> &mut Vec<Chunk> {
        self.0.get_or_insert_default()
    }

    /// Drops the `n` oldest chunks, and the list when none is left.
    fn drop_oldest(&mut self, n: usize) {
        if let Some(v) = self.0.as_mut().filter(|_| n > 0) {
            v.drain(..n);
            if v.is_empty() {
                self.0 = None;
            }
        }
    }
}

impl std::ops::Deref for Closed {
    type Target = [Chunk];

    fn deref(&self) -> &[Chunk] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl std::ops::DerefMut for Closed {
    fn deref_mut(&mut self) -> &mut [Chunk] {
        self.0.as_deref_mut().map_or(&mut [], Vec::as_mut_slice)
    }
}

/// The hasher of a shard's hash index, whose keys are hashes already: it spreads the key's bits
/// over the word (the table takes its tags from the top bits) instead of hashing them again.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u32(u32::from(b) ^ self.0 as u32);
        }
    }

    fn write_u32(&mut self, key: u32) {
        self.0 = u64::from(key).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

type KeyMap<V> = HashMap<u32, V, BuildHasherDefault<KeyHasher>>;

/// A shard's index key for a label-set hash: its low 32 bits (the shard is chosen by the top
/// ones). Two series sharing a key is rare but harmless: every lookup compares the labels.
fn index_key(hash: u64) -> u32 {
    hash as u32
}

#[derive(Default)]
struct Shard {
    /// Index key ([`index_key`]) to the slot holding the series with that key: one entry of 8
    /// bytes per series, where a list per key cost a heap allocation each.
    by_hash: KeyMap<u32>,
    /// Keys that two or more held series share (rare at 32 bits per shard, never wrong): every
    /// slot with that key, and no entry in `by_hash`.
    collided: KeyMap<Vec<u32>>,
    /// Metric name to slots: selectors with a pinned name read only these.
    by_name: HashMap<Box<str>, Vec<u32>>,
    slots: Vec<Option<Series>>,
    free: Vec<u32>,
    /// Bumped whenever a series is created in or removed from this shard: a [`Postings`] list
    /// built at an older generation may name the wrong slots.
    generation: u64,
}

impl Shard {
    /// The slot of the series whose labels encode to `encoded` (see [`Labels::encode`]).
    fn find(&self, hash: u64, encoded: &str) -> Option<u32> {
        let key = index_key(hash);
        let same = |slot: u32| {
            self.slots[slot as usize]
                .as_ref()
                .is_some_and(|s| s.labels.encoded() == encoded)
        };
        match self.collided.get(&key) {
            Some(slots) => slots.iter().copied().find(|&slot| same(slot)),
            None => self.by_hash.get(&key).copied().filter(|&slot| same(slot)),
        }
    }

    fn add(&mut self, hash: u64, labels: Labels) -> u32 {
        let name: Box<str> = labels.metric_name().into();
        let series = Series::new(Arc::new(labels));
        let slot = match self.free.pop() {
            Some(slot) => {
                self.slots[slot as usize] = Some(series);
                slot
            }
            None => {
                if self.slots.len() == self.slots.capacity() {
                    // Grown by an eighth, not doubled: a shard's slots are its biggest block
                    // (a series is 80 bytes), and doubling left up to half of it unused.
                    self.slots.reserve_exact(self.slots.len() / 8 + 16);
                }
                self.slots.push(Some(series));
                (self.slots.len() - 1) as u32
            }
        };
        let key = index_key(hash);
        if let Some(slots) = self.collided.get_mut(&key) {
            slots.push(slot);
        } else if let Some(other) = self.by_hash.insert(key, slot) {
            self.by_hash.remove(&key);
            self.collided.insert(key, vec![other, slot]);
        }
        self.by_name.entry(name).or_default().push(slot);
        self.generation += 1;
        slot
    }

    fn remove(&mut self, slot: u32, hash: u64) {
        let Some(series) = self.slots[slot as usize].take() else {
            return;
        };
        let key = index_key(hash);
        if let Some(slots) = self.collided.get_mut(&key) {
            slots.retain(|&s| s != slot);
            if let [last] = slots[..] {
                self.collided.remove(&key);
                self.by_hash.insert(key, last);
            }
        } else if self.by_hash.get(&key) == Some(&slot) {
            self.by_hash.remove(&key);
        }
        let name = series.labels.metric_name();
        if let Some(v) = self.by_name.get_mut(name) {
            v.retain(|&s| s != slot);
            if v.is_empty() {
                self.by_name.remove(name);
            }
        }
        self.free.push(slot);
        self.generation += 1;
    }

    /// The slots of the series `selector` matches, in slot order within its name's list.
    fn matching(&self, selector: &Selector, out: &mut Vec<u32>) {
        out.clear();
        let matches = |slot: &u32| {
            self.slots[*slot as usize]
                .as_ref()
                .is_some_and(|s| selector.matches(|n| s.labels.get(n)))
        };
        match &selector.metric_name {
            Some(name) => out.extend(
                self.by_name
                    .get(name.as_str())
                    .into_iter()
                    .flatten()
                    .filter(|s| matches(s)),
            ),
            None => out.extend((0..self.slots.len() as u32).filter(matches)),
        }
    }
}

/// The series one selector matches, found once and kept across steps (the evaluator holds one
/// per selector): a step then visits only these series, without matching any label. A shard's
/// list is found again only when a series was created in it or left it since (its generation
/// moved), so 10,000 matched series cost no label comparison at a step where no series came or
/// went.
#[derive(Debug, Default)]
pub struct Postings {
    /// The store the lists were found in: another store's generations say nothing of them.
    store: u64,
    /// Per shard: the generation the list was found at (`None`: never) and its slots.
    shards: Vec<(Option<u64>, Vec<u32>)>,
    /// The matched series' label sets, shard after shard, as [`SeriesStore::visit`] numbers them.
    labels: Vec<Arc<Labels>>,
}

impl Postings {
    /// The label sets of the matched series, indexed as [`SeriesStore::visit`] numbers them.
    pub(crate) fn labels(&self) -> &[Arc<Labels>] {
        &self.labels
    }
}

/// Series selected for one evaluation: label sets and their samples, in one reused buffer.
#[derive(Debug, Default)]
pub struct Selection {
    series: Vec<(Arc<Labels>, Range<usize>)>,
    samples: Vec<Sample>,
}

impl Selection {
    pub(crate) fn clear(&mut self) {
        self.series.clear();
        self.samples.clear();
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.series.len()
    }

    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.series.is_empty()
    }

    /// Every selected series with its samples in timestamp order (staleness markers included).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&Arc<Labels>, &[Sample])> + '_ {
        self.series
            .iter()
            .map(|(l, r)| (l, &self.samples[r.clone()]))
    }
}

pub struct SeriesStore {
    /// Unique per store in this process, so a [`Postings`] knows which store it lists.
    id: u64,
    shards: Box<[Mutex<Shard>]>,
    hasher: foldhash::fast::RandomState,
    limits: StoreLimits,
    active: AtomicUsize,
    newest: AtomicI64,
}

const SHARDS: usize = 32;

/// The largest [`ENCODED`] buffer a thread keeps between appends.
const KEPT_ENCODING_BYTES: usize = 4096;

thread_local! {
    /// The label set being appended, encoded as [`Labels`] holds it, so that finding its series
    /// hashes and compares one string rather than each name and value; kept for the thread's
    /// next append.
    static ENCODED: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

impl SeriesStore {
    pub fn new(limits: StoreLimits) -> SeriesStore {
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        SeriesStore {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            hasher: foldhash::fast::RandomState::default(),
            limits,
            active: AtomicUsize::new(0),
            newest: AtomicI64::new(i64::MIN),
        }
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

    /// The hash of a label set, from its encoding (see [`Labels::encode`]).
    fn hash_labels(&self, encoded: &str) -> u64 {
        self.hasher.hash_one(encoded.as_bytes())
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
        if samples.is_empty() {
            return AppendOutcome::default();
        }
        // Read before written: the series of one request mostly share a timestamp, so only the
        // first moves the newest one, and the rest read a line no thread is writing.
        if let Some(max_t) = samples.iter().map(|s| s.t).max()
            && max_t > self.newest.load(Ordering::Relaxed)
        {
            self.newest.fetch_max(max_t, Ordering::Relaxed);
        }
        let cutoff = self.cutoff();
        ENCODED.with_borrow_mut(|encoded| {
            Labels::encode(pairs, encoded);
            let out = self.append_encoded(encoded, pairs.len(), samples, cutoff);
            // A label set far over the usual few hundred bytes leaves no buffer that size behind.
            if encoded.capacity() > KEPT_ENCODING_BYTES {
                *encoded = String::new();
            }
            out
        })
    }

    /// [`append`](Self::append) for the label set of `pairs` pairs that `encoded` holds.
    fn append_encoded(
        &self,
        encoded: &str,
        pairs: usize,
        samples: &[Sample],
        cutoff: i64,
    ) -> AppendOutcome {
        let mut out = AppendOutcome::default();
        let hash = self.hash_labels(encoded);
        let mut shard = self.shard(hash);
        let slot = match shard.find(hash, encoded) {
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
                shard.add(hash, Labels::from_encoded(encoded, pairs))
            }
        };
        let series = shard.slots[slot as usize]
            .as_mut()
            .expect("slot found by hash holds a series");
        let mut closed_head = false;
        for &s in samples {
            closed_head |= series.insert(s, cutoff, &mut out);
        }
        // Full chunks that left the retention are dropped when another one closes (or at
        // eviction), so a series holds at most one more chunk than its retention needs.
        if closed_head {
            series.trim(cutoff);
        } else {
            series.forget_before(cutoff);
        }
        out
    }

    /// Copies every series matching `selector`, with its samples whose timestamps lie in
    /// `[from, to]` (ms, both ends included), into `out` (cleared first). Series with no sample
    /// in the range are left out.
    pub(crate) fn select(&self, selector: &Selector, from: i64, to: i64, out: &mut Selection) {
        self.select_with(selector, out, |series, samples| {
            series.copy_window(from, to, samples)
        });
    }

    /// As [`select`](Self::select), with only each series' newest sample in `[from, to]`: what
    /// an instant selector reads.
    #[cfg(test)]
    pub(crate) fn select_last(&self, selector: &Selector, from: i64, to: i64, out: &mut Selection) {
        self.select_with(selector, out, |series, samples| {
            series.copy_last(from, to, samples)
        });
    }

    fn select_with(
        &self,
        selector: &Selector,
        out: &mut Selection,
        copy: impl Fn(&Series, &mut Vec<Sample>),
    ) {
        out.clear();
        for shard in self.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let mut take = |series: &Series| {
                if !selector.matches(|n| series.labels.get(n)) {
                    return;
                }
                let start = out.samples.len();
                copy(series, &mut out.samples);
                if out.samples.len() > start {
                    out.series
                        .push((series.labels.clone(), start..out.samples.len()));
                }
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

    /// Calls `f(i, samples)` for every series `selector` matches, in the order of
    /// `postings.labels()` (`i` its index there), with its samples in `[from, to]` (ms, both ends
    /// included; only the newest of them when `last_only`, as an instant selector reads), which
    /// may be none. The samples are decoded into `scratch`, one series at a time, so a step holds
    /// one series' window, not every series' at once. Returns true when the matched series
    /// changed since `postings` was last used (the caller's order of them is stale).
    ///
    /// A shard's lock is held while its matched series are visited: `f` must be short (a range
    /// function over one window).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn visit(
        &self,
        selector: &Selector,
        postings: &mut Postings,
        from: i64,
        to: i64,
        last_only: bool,
        scratch: &mut Vec<Sample>,
        mut f: impl FnMut(usize, &[Sample]),
    ) -> bool {
        let mut changed = postings.store != self.id || postings.shards.len() != self.shards.len();
        if changed {
            postings.store = self.id;
            postings.shards = vec![(None, Vec::new()); self.shards.len()];
        }
        let mut i = 0;
        for (k, shard) in self.shards.iter().enumerate() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let (generation, slots) = &mut postings.shards[k];
            if *generation != Some(shard.generation) {
                shard.matching(selector, slots);
                *generation = Some(shard.generation);
                changed = true;
            }
            for &slot in slots.iter() {
                let Some(series) = &shard.slots[slot as usize] else {
                    continue;
                };
                if changed {
                    // From the first changed shard on, every label set is collected again.
                    postings.labels.truncate(i);
                    postings.labels.push(series.labels.clone());
                }
                scratch.clear();
                if last_only {
                    series.copy_last(from, to, scratch);
                } else {
                    series.copy_window(from, to, scratch);
                }
                f(i, scratch);
                i += 1;
            }
        }
        postings.labels.truncate(i);
        changed
    }

    /// Drops samples older than the retention and removes series left with none (gone stale).
    /// Returns the number of series removed.
    pub(crate) fn evict(&self) -> usize {
        let cutoff = self.cutoff();
        let mut removed = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            let mut dead = Vec::new();
            for (slot, series) in shard.slots.iter_mut().enumerate() {
                if let Some(series) = series {
                    series.trim(cutoff);
                    if series.is_empty() {
                        dead.push((slot as u32, self.hash_labels(series.labels.encoded())));
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
                s.slots.iter().flatten().map(Series::len).sum::<usize>()
            })
            .sum()
    }
}

/// The metric name of a validated label set given as sorted pairs.
pub(crate) fn metric_name_of<'a>(pairs: &[(&'a str, &'a str)]) -> Option<&'a str> {
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
    fn full_chunks_past_the_retention_go_when_the_next_chunk_closes() {
        let st = SeriesStore::new(StoreLimits {
            max_series: 10,
            retention_ms: 90_000,
        });
        let pairs = [("__name__", "m")];
        // The series' full chunks, the newest time in its oldest one, and its retention start.
        let state = |st: &SeriesStore| {
            let shard = st.shard(st.hash_labels(Labels::from_sorted(&pairs).encoded()));
            let series = shard.slots.iter().flatten().next().expect("one series");
            let oldest = series.closed.iter().next().map(Chunk::last_t);
            (series.closed.iter().count(), oldest, series.start_t)
        };
        let closed = |st: &SeriesStore| state(st).0;
        // Three full chunks and one sample at 1 s: the retention holds the last 90 seconds.
        let mut t = 0;
        for _ in 0..=3 * CHUNK_SAMPLES {
            st.append(&pairs, &[s(t, 1.0)]);
            t += 1_000;
        }
        let held = closed(&st);
        // Appends that close no chunk leave the old chunks where they are, but nothing older
        // than the retention is read or counted any more.
        for _ in 0..CHUNK_SAMPLES - 1 {
            st.append(&pairs, &[s(t, 1.0)]);
            t += 1_000;
        }
        assert_eq!(closed(&st), held);
        let cutoff = t - 1_000 - 90_000;
        assert!(
            cutoff >= CHUNK_SAMPLES as i64 * 1_000,
            "the oldest chunk is past it"
        );
        let mut out = Selection::default();
        st.select(&sel("m"), 0, i64::MAX, &mut out);
        let read = &out.iter().next().expect("series").1;
        assert!(read[0].t >= cutoff, "{} is past the retention", read[0].t);
        assert_eq!(st.sample_count(), read.len());
        // The append that closes the next chunk drops those that hold only such samples.
        st.append(&pairs, &[s(t, 1.0)]);
        assert!(closed(&st) < held + 1, "{} chunks held", closed(&st));
        let (_, oldest, start_t) = state(&st);
        assert!(oldest.expect("a full chunk") >= start_t);
    }

    #[test]
    fn chunked_windows_read_exactly_what_a_sorted_list_holds() {
        // 1,000 samples (several chunks), sent newest-first in part and with retries, against
        // a plain sorted list of what should be held.
        let st = SeriesStore::new(StoreLimits {
            max_series: 10,
            retention_ms: 1_000_000,
        });
        let pairs = [("__name__", "m")];
        let mut want: Vec<Sample> = Vec::new();
        let mut state = 7u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let mut order: Vec<i64> = (0..1_000).collect();
        // Every tenth sample arrives late, after the rest.
        order.sort_by_key(|i| (i % 10 == 3, *i));
        for i in order {
            let v = f64::from_bits(next() >> 2) * if i % 2 == 0 { 1.0 } else { -1.0 };
            let sample = s(1_000 + i * 500, v);
            assert_eq!(st.append(&pairs, &[sample]).appended, 1);
            want.push(sample);
        }
        want.sort_by_key(|x| x.t);
        // Retries of held samples are duplicates; a new value at a held time conflicts.
        let o = st.append(&pairs, &[want[17], want[900], s(want[400].t, 0.5)]);
        assert_eq!((o.appended, o.duplicate, o.conflicting), (0, 2, 1));
        let mut out = Selection::default();
        for (from, to) in [
            (0, i64::MAX),
            (1_000, 1_000),
            (60_250, 61_000),
            (499_000, 600_000),
            (499_000, 499_999),
            (500_500, 600_000),
        ] {
            st.select(&sel("m"), from, to, &mut out);
            let expect: Vec<(i64, u64)> = want
                .iter()
                .filter(|x| x.t >= from && x.t <= to)
                .map(|x| (x.t, x.v.to_bits()))
                .collect();
            let got: Vec<(i64, u64)> = out
                .iter()
                .flat_map(|(_, xs)| xs.iter().map(|x| (x.t, x.v.to_bits())))
                .collect();
            assert_eq!(got, expect, "[{from}, {to}]");
            // An instant selector's read: the newest of the same samples, whether the head
            // chunk answers it or a chunk is decoded.
            st.select_last(&sel("m"), from, to, &mut out);
            let last: Vec<(i64, u64)> = out
                .iter()
                .flat_map(|(_, xs)| xs.iter().map(|x| (x.t, x.v.to_bits())))
                .collect();
            assert_eq!(last, expect.last().into_iter().copied().collect::<Vec<_>>());
        }
        // Retention now cuts inside a chunk: what is older is neither read nor counted.
        st.append(&pairs, &[s(1_300_000, 1.0)]);
        let cutoff = 1_300_000 - 1_000_000;
        st.evict();
        let kept = want.iter().filter(|x| x.t >= cutoff).count() + 1;
        assert_eq!(st.sample_count(), kept);
        st.select(&sel("m"), 0, i64::MAX, &mut out);
        assert_eq!(out.iter().next().expect("series").1.len(), kept);
        assert!(out.iter().next().expect("series").1[0].t >= cutoff);
    }

    #[test]
    fn a_slot_stays_within_its_budget() {
        // 100,000 series hold 100,000 slots: tests/memory.rs counts them, this names the cause
        // when a new field makes every series fatter: the head chunk inline, the label set and
        // the full chunks behind a word each.
        assert!(
            size_of::<Option<Series>>() <= 72,
            "{}",
            size_of::<Option<Series>>()
        );
    }

    #[test]
    fn series_sharing_a_hash_are_told_apart() {
        // The store's hasher is seeded at random, so two label sets are given one hash here.
        let mut shard = Shard::default();
        let (a, b) = (
            Labels::from_sorted(&[("__name__", "m"), ("k", "a")]),
            Labels::from_sorted(&[("__name__", "m"), ("k", "b")]),
        );
        let (a, b) = (a.encoded(), b.encoded());
        let slot_a = shard.add(7, Labels::from_encoded(a, 2));
        assert_eq!(shard.find(7, b), None);
        let slot_b = shard.add(7, Labels::from_encoded(b, 2));
        assert_eq!(
            (shard.find(7, a), shard.find(7, b)),
            (Some(slot_a), Some(slot_b))
        );
        let generation = shard.generation;
        shard.remove(slot_a, 7);
        assert!(
            shard.generation > generation,
            "removal invalidates postings"
        );
        assert_eq!((shard.find(7, a), shard.find(7, b)), (None, Some(slot_b)));
        shard.remove(slot_b, 7);
        assert_eq!(shard.find(7, b), None);
        assert!(shard.by_hash.is_empty() && shard.collided.is_empty());
    }

    #[test]
    fn visit_reads_what_select_reads_and_sees_series_come_and_go() {
        let st = store(100);
        for i in 0..40 {
            let v = format!("{i:02}");
            st.append(
                &[("__name__", "m"), ("i", v.as_str())],
                &[s(1000, i as f64), s(2000, 2.0 * i as f64)],
            );
        }
        st.append(&[("__name__", "other")], &[s(1000, 1.0)]);
        let selector = Selector::new(
            Some("m"),
            &[promql_parser::label::Matcher::new(
                promql_parser::label::MatchOp::NotEqual,
                "i",
                "07",
            )],
        );
        let (mut postings, mut scratch) = (Postings::default(), Vec::new());
        let mut visited = |postings: &mut Postings, last_only: bool| {
            let mut got = Vec::new();
            let changed = st.visit(
                &selector,
                postings,
                0,
                1500,
                last_only,
                &mut scratch,
                |i, xs| got.push((i, xs.to_vec())),
            );
            let mut by_labels: Vec<(String, Vec<Sample>)> = got
                .into_iter()
                .map(|(i, xs)| (postings.labels()[i].to_string(), xs))
                .collect();
            by_labels.sort_by(|a, b| a.0.cmp(&b.0));
            (changed, by_labels)
        };
        let mut out = Selection::default();
        let selected = |sel: &mut Selection| {
            st.select(&selector, 0, 1500, sel);
            let mut v: Vec<(String, Vec<Sample>)> = sel
                .iter()
                .map(|(l, xs)| (l.to_string(), xs.to_vec()))
                .collect();
            v.sort_by(|a, b| a.0.cmp(&b.0));
            v
        };
        let (changed, first) = visited(&mut postings, false);
        assert!(changed, "the first visit finds the series");
        assert_eq!(first.len(), 39);
        assert_eq!(first, selected(&mut out));
        let (changed, again) = visited(&mut postings, true);
        assert!(!changed, "no series came or went");
        assert_eq!(again, first);
        // A new series, then an evicted one: each is seen at the next visit.
        st.append(&[("__name__", "m"), ("i", "zz")], &[s(1500, 9.0)]);
        let (changed, more) = visited(&mut postings, false);
        assert!(changed);
        assert_eq!(more.len(), 40);
        assert_eq!(more, selected(&mut out));
        st.append(&[("__name__", "m"), ("i", "zz")], &[s(100_000, 9.0)]);
        st.evict();
        let (changed, after) = visited(&mut postings, false);
        assert!(changed);
        assert_eq!(
            after.iter().map(|x| x.0.as_str()).collect::<Vec<_>>(),
            [r#"{__name__="m", i="zz"}"#]
        );
        assert!(after[0].1.is_empty(), "its samples lie outside the window");
        // A postings list from another store is not trusted.
        let other = store(10);
        other.append(&[("__name__", "m"), ("i", "01")], &[s(1000, 1.0)]);
        let mut n = 0;
        assert!(other.visit(
            &selector,
            &mut postings,
            0,
            1500,
            false,
            &mut scratch,
            |_, _| n += 1
        ));
        assert_eq!((n, postings.labels().len()), (1, 1));
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
