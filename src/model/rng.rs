//! The models' seeded random number generator.
//!
//! canopy owns its generator (xoshiro256** seeded through SplitMix64) instead of depending on a
//! crate's, so that "the same data and seed give the same model bytes" holds across dependency
//! upgrades and platforms: every draw here is defined by this file alone.

/// xoshiro256**: fast, 256 bits of state, good statistical quality for sampling and splits.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole stream is determined by `seed`.
    pub fn new(seed: u64) -> Self {
        let mut sm = seed;
        let mut next = || {
            sm = sm.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = sm;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        Rng {
            s: [next(), next(), next(), next()],
        }
    }

    /// An independent stream for sub-task `index` (one tree, say), so that trees can be grown in
    /// any order or on any thread and still come out the same.
    pub fn fork(&self, index: u64) -> Rng {
        Rng::new(self.s[0] ^ index.wrapping_mul(0xd6e8_feb8_6659_fd93).rotate_left(17))
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [lo, hi); `lo` when the interval is empty.
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        let x = lo + (hi - lo) * self.next_f64();
        if x < hi { x } else { lo }
    }

    /// Uniform integer in [0, n), unbiased (Lemire's multiply-and-reject). `n` must be > 0.
    pub fn below(&mut self, n: usize) -> usize {
        debug_assert!(n > 0);
        let n = n as u64;
        let mut m = (self.next_u64() as u128) * (n as u128);
        if (m as u64) < n {
            let threshold = n.wrapping_neg() % n;
            while (m as u64) < threshold {
                m = (self.next_u64() as u128) * (n as u128);
            }
        }
        (m >> 64) as usize
    }

    /// Fills `out` with `k` distinct indices from [0, n), in random order (partial Fisher-Yates
    /// over `scratch`, which is reused between calls to avoid allocating per tree).
    pub fn sample_without_replacement(
        &mut self,
        n: usize,
        k: usize,
        scratch: &mut Vec<u32>,
        out: &mut Vec<u32>,
    ) {
        let k = k.min(n);
        scratch.clear();
        scratch.extend(0..n as u32);
        out.clear();
        for i in 0..k {
            let j = i + self.below(n - i);
            scratch.swap(i, j);
            out.push(scratch[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_stream_and_forks_differ() {
        let mut a = Rng::new(42);
        let mut b = Rng::new(42);
        let xs: Vec<u64> = (0..8).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..8).map(|_| b.next_u64()).collect();
        assert_eq!(xs, ys);
        let mut f0 = Rng::new(42).fork(0);
        let mut f1 = Rng::new(42).fork(1);
        assert_ne!(f0.next_u64(), f1.next_u64());
    }

    #[test]
    fn below_stays_in_range_and_covers_it() {
        let mut r = Rng::new(7);
        let mut seen = [0usize; 5];
        for _ in 0..5000 {
            seen[r.below(5)] += 1;
        }
        assert!(seen.iter().all(|&c| c > 800), "{seen:?}");
    }

    #[test]
    fn sampling_without_replacement_is_distinct() {
        let mut r = Rng::new(3);
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        r.sample_without_replacement(100, 30, &mut scratch, &mut out);
        let mut sorted = out.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 30);
        assert!(sorted.iter().all(|&i| i < 100));
    }
}
