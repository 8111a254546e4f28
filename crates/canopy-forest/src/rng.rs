//! The models' seeded random number generator.
//!
//! xoshiro256** seeded through SplitMix64, from `rand_xoshiro`, behind rand's traits
//! (`rand_core::{RngCore, SeedableRng}`), so that any rand-compatible code can draw from it.
//! "The same data and seed give the same model bytes" rests on its stream never changing: the
//! tests below compare it, draw for draw, with the algorithm as its authors define it, so an
//! upgrade that changed the stream would fail them before it changed a model.

use rand_core::{RngCore, SeedableRng};
use rand_xoshiro::Xoshiro256StarStar;

/// xoshiro256**: fast, 256 bits of state, good statistical quality for sampling and splits.
#[derive(Debug, Clone)]
pub struct Rng {
    core: Xoshiro256StarStar,
    /// The first word of the seeded state, from which [`Rng::fork`] derives sub-streams.
    fork_base: u64,
}

impl Rng {
    /// A generator whose whole stream is determined by `seed` (SplitMix64 expands it into the
    /// 256-bit state).
    pub fn new(seed: u64) -> Self {
        // What `Xoshiro256StarStar::seed_from_u64` does, with the state kept in view so that its
        // first word can seed the forks: SplitMix64's output, little-endian, as the 256-bit seed.
        let mut state = [0u8; 32];
        rand_xoshiro::SplitMix64::seed_from_u64(seed).fill_bytes(&mut state);
        let fork_base = u64::from_le_bytes(state[..8].try_into().expect("8 bytes"));
        let core = Xoshiro256StarStar::from_seed(state);
        Rng { core, fork_base }
    }

    /// An independent stream for sub-task `index` (one tree, say), so that trees can be grown in
    /// any order or on any thread and still come out the same. Derived from the seed alone, not
    /// from how far this generator has drawn.
    pub fn fork(&self, index: u64) -> Rng {
        Rng::new(self.fork_base ^ index.wrapping_mul(0xd6e8_feb8_6659_fd93).rotate_left(17))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.core.next_u64()
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

impl RngCore for Rng {
    fn next_u32(&mut self) -> u32 {
        self.core.next_u32()
    }

    fn next_u64(&mut self) -> u64 {
        self.core.next_u64()
    }

    fn fill_bytes(&mut self, dst: &mut [u8]) {
        self.core.fill_bytes(dst)
    }
}

impl SeedableRng for Rng {
    /// The models are seeded with one `u64`: these are its little-endian bytes.
    type Seed = [u8; 8];

    fn from_seed(seed: [u8; 8]) -> Rng {
        Rng::new(u64::from_le_bytes(seed))
    }

    fn seed_from_u64(seed: u64) -> Rng {
        Rng::new(seed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// xoshiro256** and SplitMix64 as their authors publish them (Blackman and Vigna,
    /// xoshiro256starstar.c and splitmix64.c): the reference the generator must equal.
    struct Reference {
        s: [u64; 4],
    }

    impl Reference {
        fn new(seed: u64) -> Reference {
            let mut x = seed;
            let mut splitmix = || {
                x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = x;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                z ^ (z >> 31)
            };
            Reference {
                s: [splitmix(), splitmix(), splitmix(), splitmix()],
            }
        }

        fn next(&mut self) -> u64 {
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
    }

    #[test]
    fn the_stream_is_the_published_xoshiro256starstar_seeded_by_splitmix64() {
        for seed in [0, 1, 42, 0x9e37_79b9_7f4a_7c15, u64::MAX] {
            let (mut ours, mut reference) = (Rng::new(seed), Reference::new(seed));
            assert_eq!(ours.fork_base, reference.s[0], "seed {seed}");
            for i in 0..10_000 {
                assert_eq!(ours.next_u64(), reference.next(), "seed {seed}, draw {i}");
            }
            // forks, as every tree of every forest is seeded
            for k in [0u64, 1, 57, 1 << 40] {
                let key = Reference::new(seed).s[0]
                    ^ k.wrapping_mul(0xd6e8_feb8_6659_fd93).rotate_left(17);
                let (mut ours, mut reference) = (Rng::new(seed).fork(k), Reference::new(key));
                for _ in 0..1_000 {
                    assert_eq!(ours.next_u64(), reference.next());
                }
            }
        }
        // rand's traits draw the same stream
        let mut a = <Rng as SeedableRng>::seed_from_u64(42);
        let mut b = Reference::new(42);
        assert_eq!(RngCore::next_u64(&mut a), b.next());
        assert_eq!(RngCore::next_u32(&mut a), (b.next() >> 32) as u32);
    }

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
