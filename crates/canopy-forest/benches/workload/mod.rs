//! The isolation forest's bench rows, shared by this crate's forest bench and the main crate's
//! likelihood bench (which includes this file by path) so that both time the same data.

use canopy_forest::rng::Rng;

/// Features per row.
pub const N_FEATURES: usize = 5;

/// `n` rows of 5 correlated, skewed features, a rough stand-in for cpu/memory/restarts/net.
pub fn rows(n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let mut out = Vec::with_capacity(n * N_FEATURES);
    for _ in 0..n {
        let load = rng.next_f64();
        out.extend([
            load + 0.1 * rng.next_f64(),
            0.5 * load + 0.3 * rng.next_f64(),
            (rng.next_f64() * 4.0).floor(),
            (1e6 * load * (1.0 + rng.next_f64())).ln(),
            (8e5 * load * (1.0 + rng.next_f64())).ln(),
        ]);
    }
    out
}
