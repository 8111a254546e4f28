//! A series' samples compressed as Prometheus's TSDB and Gorilla compress them: timestamps as
//! delta-of-delta in variable-width buckets, values as the XOR of their bits with the previous
//! value's, keeping only the meaningful bits. A regular scrape costs one bit per timestamp and a
//! few bits to two bytes per value, where a plain sample is 16 bytes.
//!
//! A [`Chunk`] is append-only in time order; the store re-encodes a chunk in the rare case of an
//! out-of-order sample. Values are kept bit for bit (staleness markers and every NaN payload
//! survive), so PromQL reads exactly what was written.

use super::store::Sample;

/// One chunk of one series: a bit stream and the appender's state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Chunk {
    /// The bit stream, and past its `len` bits zeros up to the slice's end: spare room for
    /// appends, kept in the slice's own length so the chunk carries no separate capacity word.
    bits: Box<[u8]>,
    /// Bits written into `bits`.
    len: u32,
    count: u16,
    last_t: i64,
    last_delta: i64,
    last_v: u64,
    /// The leading and trailing zero counts of the last XOR window written; `leading == 0xff`
    /// when none has been (the next non-zero XOR writes its window).
    leading: u8,
    trailing: u8,
}

/// Delta-of-delta buckets: a prefix of `code_bits` bits (`code`), then the value in `bits` bits
/// as two's complement, for values in `-(2^(bits-1)) + 1 ..= 2^(bits-1)`, as Prometheus's XOR
/// chunk does.
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 14), (0b110, 3, 17), (0b1110, 4, 20)];

impl Chunk {
    /// Samples held.
    pub(crate) fn len(&self) -> usize {
        usize::from(self.count)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first and last timestamps held (meaningless when empty).
    pub(crate) fn first_t(&self) -> i64 {
        // The first sample's timestamp is the stream's first 64 bits, written whole.
        self.bits
            .first_chunk::<8>()
            .map_or(0, |b| i64::from_be_bytes(*b))
    }

    pub(crate) fn last_t(&self) -> i64 {
        self.last_t
    }

    /// The newest sample (meaningless when empty).
    pub(crate) fn last(&self) -> Sample {
        Sample {
            t: self.last_t,
            v: f64::from_bits(self.last_v),
        }
    }

    /// Heap bytes the chunk holds.
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.bits.len()
    }

    /// Gives back the bits' spare room (a full chunk receives no more appends).
    pub(crate) fn shrink_to_fit(&mut self) {
        let used = self.len.div_ceil(8) as usize;
        if used < self.bits.len() {
            let mut bits = std::mem::take(&mut self.bits).into_vec();
            bits.truncate(used);
            self.bits = bits.into_boxed_slice();
        }
    }

    /// A chunk of `samples`, which must be in strictly increasing time order.
    pub(crate) fn from_samples(samples: &[Sample]) -> Chunk {
        let mut c = Chunk::default();
        for &s in samples {
            c.push(s);
        }
        c.shrink_to_fit();
        c
    }

    /// Appends a sample newer than every one held.
    pub(crate) fn push(&mut self, s: Sample) {
        debug_assert!(
            self.count == 0 || s.t > self.last_t,
            "samples in time order"
        );
        let v = s.v.to_bits();
        match self.count {
            0 => {
                self.write(s.t as u64, 64);
                self.write(v, 64);
                self.leading = 0xff;
            }
            _ => {
                let delta = s.t.wrapping_sub(self.last_t);
                self.write_dod(delta.wrapping_sub(self.last_delta));
                self.last_delta = delta;
                self.write_xor(v ^ self.last_v);
            }
        }
        self.last_t = s.t;
        self.last_v = v;
        self.count += 1;
    }

    /// Every sample held, in time order.
    pub(crate) fn iter(&self) -> ChunkIter<'_> {
        ChunkIter {
            bits: &self.bits,
            pos: 0,
            left: self.count,
            first: true,
            t: 0,
            delta: 0,
            v: 0,
            leading: 0,
            width: 64,
        }
    }

    /// Appends the samples with `from <= t <= to` to `out`, in time order: what a selection
    /// reads. One tight loop instead of [`Chunk::iter`] behind `skip_while`/`take_while`: a step
    /// over 10,000 series decodes some 300,000 samples, and the iterator's per-sample state (the
    /// first-sample flag, the count left, three unaligned loads) was most of its cost. Each
    /// sample here costs two loads, one for its timestamp's bits and one for its value's, and
    /// decoding stops at the first sample after `to`.
    pub(crate) fn decode_window(&self, from: i64, to: i64, out: &mut Vec<Sample>) {
        if self.count == 0 || self.first_t() > to || self.last_t < from {
            return;
        }
        let bits = &self.bits[..];
        let mut pos = 0;
        let mut t = read(bits, &mut pos, 64) as i64;
        let mut v = read(bits, &mut pos, 64);
        out.reserve(usize::from(self.count));
        if t >= from {
            out.push(Sample {
                t,
                v: f64::from_bits(v),
            });
        }
        let (mut delta, mut leading, mut width) = (0i64, 0u32, 64u32);
        for _ in 1..self.count {
            let w = peek(bits, pos);
            let dod = if w >> 63 == 0 {
                pos += 1;
                0
            } else {
                let ones = w.leading_ones().min(4);
                if ones == 4 {
                    pos += 4;
                    read(bits, &mut pos, 64) as i64
                } else {
                    let (_, code_bits, n) = DOD_BUCKETS[ones as usize - 1];
                    let raw = ((w << code_bits) >> (64 - n)) as i64;
                    pos += (code_bits + n) as usize;
                    if raw > 1 << (n - 1) {
                        raw - (1 << n)
                    } else {
                        raw
                    }
                }
            };
            delta = delta.wrapping_add(dod);
            t = t.wrapping_add(delta);
            if t > to {
                return;
            }
            let w = peek(bits, pos);
            if w >> 63 != 0 {
                let head = if w >> 62 == 0b11 {
                    leading = ((w >> 57) & 31) as u32;
                    let n = ((w >> 51) & 63) as u32;
                    width = if n == 0 { 64 } else { n };
                    13
                } else {
                    2
                };
                let x = if head + width <= 64 {
                    pos += (head + width) as usize;
                    (w << head) >> (64 - width)
                } else {
                    pos += head as usize;
                    read(bits, &mut pos, width)
                };
                v ^= x << (64 - leading - width);
            } else {
                pos += 1;
            }
            if t >= from {
                out.push(Sample {
                    t,
                    v: f64::from_bits(v),
                });
            }
        }
    }

    fn write_dod(&mut self, dod: i64) {
        if dod == 0 {
            self.write(0, 1);
            return;
        }
        for (code, code_bits, bits) in DOD_BUCKETS {
            let max = 1i64 << (bits - 1);
            if (-max + 1..=max).contains(&dod) {
                self.write(code, code_bits);
                self.write(dod as u64 & ((1 << bits) - 1), bits);
                return;
            }
        }
        self.write(0b1111, 4);
        self.write(dod as u64, 64);
    }

    fn write_xor(&mut self, x: u64) {
        if x == 0 {
            self.write(0, 1);
            return;
        }
        // Leading zeros are capped at 31, as they are written in 5 bits.
        let leading = (x.leading_zeros() as u8).min(31);
        let trailing = x.trailing_zeros() as u8;
        if self.leading != 0xff && leading >= self.leading && trailing >= self.trailing {
            // Within the previous window: its meaningful bits only.
            self.write(0b10, 2);
            let width = 64 - u32::from(self.leading) - u32::from(self.trailing);
            self.write(x >> self.trailing, width);
        } else {
            self.leading = leading;
            self.trailing = trailing;
            let width = 64 - u32::from(leading) - u32::from(trailing);
            self.write(0b11, 2);
            self.write(u64::from(leading), 5);
            // A width of 64 is written as 0 in 6 bits.
            self.write(u64::from(width & 63), 6);
            self.write(x >> trailing, width);
        }
    }

    /// Writes the low `n` bits of `value`, most significant first.
    fn write(&mut self, value: u64, n: u32) {
        let mut left = n;
        while left > 0 {
            let byte = (self.len / 8) as usize;
            let used = self.len % 8;
            if byte == self.bits.len() {
                self.grow();
            }
            let free = 8 - used;
            let take = free.min(left);
            let chunk = ((value >> (left - take)) & ((1 << take) - 1)) as u8;
            self.bits[byte] |= chunk << (free - take);
            self.len += take;
            left -= take;
        }
    }

    /// Makes room for more bytes: a quarter more, not double, since a head chunk is mostly
    /// appended to a byte at a time, and doubling left most series with a third of their bits'
    /// room unused (100,000 series hold 100,000 head chunks).
    #[cold]
    fn grow(&mut self) {
        let mut bits = std::mem::take(&mut self.bits).into_vec();
        let len = bits.len() + (bits.len() / 4).max(8);
        bits.reserve_exact(len - bits.len());
        bits.resize(len, 0);
        self.bits = bits.into_boxed_slice();
    }
}

/// The 64 bits of `bits` from bit `pos` on, most significant first (zeros past the end): an
/// unaligned big-endian load of the 8 bytes under the cursor and the ninth for the bits that
/// straddle it.
#[inline(always)]
fn peek(bits: &[u8], pos: usize) -> u64 {
    let i = pos / 8;
    let off = (pos % 8) as u32;
    let hi = match bits.get(i..i + 8) {
        Some(w) => u64::from_be_bytes(w.try_into().expect("8 bytes")),
        None => load_tail(bits, i),
    };
    let lo = bits.get(i + 8).copied().unwrap_or(0);
    (hi << off) | (u64::from(lo) >> (8 - off))
}

/// The bytes of `bits` from `i` on, fewer than 8, as the high bytes of a word.
fn load_tail(bits: &[u8], i: usize) -> u64 {
    let tail = bits.get(i..).unwrap_or_default();
    tail.iter()
        .enumerate()
        .fold(0, |w, (k, &b)| w | u64::from(b) << (56 - 8 * k))
}

/// Reads `n` (1 to 64) bits at `pos`, moving it past them.
#[inline(always)]
fn read(bits: &[u8], pos: &mut usize, n: u32) -> u64 {
    let x = peek(bits, *pos) >> (64 - n);
    *pos += n as usize;
    x
}

/// Decodes a chunk's samples in time order.
pub(crate) struct ChunkIter<'c> {
    bits: &'c [u8],
    /// The next bit to read.
    pos: usize,
    left: u16,
    first: bool,
    t: i64,
    delta: i64,
    v: u64,
    leading: u32,
    width: u32,
}

impl ChunkIter<'_> {
    #[inline(always)]
    fn peek(&self) -> u64 {
        peek(self.bits, self.pos)
    }

    /// Reads `n` (1 to 64) bits.
    #[inline(always)]
    fn read(&mut self, n: u32) -> u64 {
        read(self.bits, &mut self.pos, n)
    }

    /// Reads a delta-of-delta: `0`, or a prefix of ones ended by a zero selecting the bucket
    /// (`10`, `110`, `1110`), or `1111` then 64 bits.
    #[inline(always)]
    fn dod(&mut self) -> i64 {
        let w = self.peek();
        if w >> 63 == 0 {
            self.pos += 1;
            return 0;
        }
        let ones = w.leading_ones().min(4);
        if ones == 4 {
            self.pos += 4;
            return self.read(64) as i64;
        }
        let (_, code_bits, bits) = DOD_BUCKETS[ones as usize - 1];
        let raw = ((w << code_bits) >> (64 - bits)) as i64;
        self.pos += (code_bits + bits) as usize;
        // Two's complement in `bits`, with the range's asymmetry: 2^(bits-1) is positive.
        if raw > 1 << (bits - 1) {
            raw - (1 << bits)
        } else {
            raw
        }
    }

    /// Reads a value's XOR with the previous one: `0` (unchanged), `10` then the bits of the
    /// previous window, or `11`, a new window (5 bits of leading zeros, 6 of width) and its bits.
    #[inline(always)]
    fn xor(&mut self) {
        let w = self.peek();
        if w >> 63 == 0 {
            self.pos += 1;
            return;
        }
        if w >> 62 == 0b11 {
            self.leading = ((w >> 57) & 31) as u32;
            let width = ((w >> 51) & 63) as u32;
            self.width = if width == 0 { 64 } else { width };
            self.pos += 13;
        } else {
            self.pos += 2;
        }
        let trailing = 64 - self.leading - self.width;
        self.v ^= self.read(self.width) << trailing;
    }
}

impl Iterator for ChunkIter<'_> {
    type Item = Sample;

    #[inline]
    fn next(&mut self) -> Option<Sample> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        if self.first {
            self.first = false;
            self.t = self.read(64) as i64;
            self.v = self.read(64);
        } else {
            let dod = self.dod();
            self.delta = self.delta.wrapping_add(dod);
            self.t = self.t.wrapping_add(self.delta);
            self.xor();
        }
        Some(Sample {
            t: self.t,
            v: f64::from_bits(self.v),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(samples: &[Sample]) {
        let c = Chunk::from_samples(samples);
        assert_eq!(c.len(), samples.len());
        let back: Vec<Sample> = c.iter().collect();
        assert_eq!(back.len(), samples.len());
        for (a, b) in samples.iter().zip(&back) {
            assert_eq!((a.t, a.v.to_bits()), (b.t, b.v.to_bits()));
        }
    }

    fn at(ts: &[i64], v: impl Fn(usize) -> f64) -> Vec<Sample> {
        ts.iter()
            .enumerate()
            .map(|(i, &t)| Sample { t, v: v(i) })
            .collect()
    }

    #[test]
    fn every_delta_of_delta_bucket_edge_round_trips() {
        // Deltas chosen so that delta-of-deltas hit each bucket's edges, both signs, and the
        // 64-bit escape.
        let mut ts = vec![1_700_000_000_000i64, 1_700_000_030_000];
        let mut delta = 30_000i64;
        for dod in [
            0,
            1,
            -1,
            8191,
            8192,
            -8191,
            -8192,
            8193,
            65535,
            65536,
            -65535,
            -65536,
            65537,
            524287,
            524288,
            -524287,
            -524288,
            524289,
            1 << 40,
            -(1 << 39),
        ] {
            delta += dod;
            let t = ts.last().copied().unwrap() + delta;
            ts.push(t);
        }
        assert!(ts.windows(2).all(|w| w[1] > w[0]));
        round_trip(&at(&ts, |i| i as f64));
    }

    #[test]
    fn values_keep_every_bit() {
        let stale = f64::from_bits(0x7ff0_0000_0000_0002);
        let values = [
            0.0,
            -0.0,
            1.0,
            1.0,
            f64::NAN,
            stale,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            1e-300,
            123_456.789,
            123_456.79,
            f64::from_bits(1),
            f64::from_bits(u64::MAX),
            0.0,
        ];
        let ts: Vec<i64> = (0..values.len() as i64).map(|i| i * 15_000).collect();
        round_trip(&at(&ts, |i| values[i]));
    }

    #[test]
    fn a_regular_scrape_compresses_to_a_few_bytes_per_sample() {
        let ts: Vec<i64> = (0..120).map(|i| 1_700_000_000_000 + i * 30_000).collect();
        // A counter rising by a few hundred per scrape.
        let samples = at(&ts, |i| (i * 317 + i * i % 13) as f64);
        let c = Chunk::from_samples(&samples);
        round_trip(&samples);
        assert!(c.heap_bytes() < 120 * 3, "{} bytes", c.heap_bytes());
    }

    proptest! {
        #[test]
        fn any_increasing_series_round_trips(
            start in any::<i64>().prop_map(|t| t >> 2),
            gaps in proptest::collection::vec(1i64..1 << 42, 0..200),
            bits in proptest::collection::vec(any::<u64>(), 201),
            repeat in proptest::collection::vec(any::<bool>(), 201),
        ) {
            let mut ts = vec![start];
            for g in gaps {
                ts.push(ts.last().unwrap() + g);
            }
            let mut v = 0u64;
            let values: Vec<f64> = (0..ts.len())
                .map(|i| {
                    if !repeat[i] {
                        v = bits[i];
                    }
                    f64::from_bits(v)
                })
                .collect();
            round_trip(&at(&ts, |i| values[i]));
        }

        #[test]
        fn a_window_decodes_exactly_the_samples_within_it(
            gaps in proptest::collection::vec(1i64..100_000, 0..64),
            bits in proptest::collection::vec(any::<u64>(), 65),
            from in 0i64..3_000_000,
            len in 0i64..3_000_000,
        ) {
            let mut ts = vec![1_000_000i64];
            for g in gaps {
                ts.push(ts.last().unwrap() + g);
            }
            let samples = at(&ts, |i| f64::from_bits(bits[i] >> (i % 3 * 20)));
            let c = Chunk::from_samples(&samples);
            let (from, to) = (1_000_000 + from - 500_000, 1_000_000 + from - 500_000 + len);
            let mut got = Vec::new();
            c.decode_window(from, to, &mut got);
            let want: Vec<(i64, u64)> = samples
                .iter()
                .filter(|x| x.t >= from && x.t <= to)
                .map(|x| (x.t, x.v.to_bits()))
                .collect();
            let got: Vec<(i64, u64)> = got.iter().map(|x| (x.t, x.v.to_bits())).collect();
            prop_assert_eq!(got, want);
        }
    }
}
