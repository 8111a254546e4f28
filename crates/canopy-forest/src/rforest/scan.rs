//! The split search's inner loop: one feature's candidate thresholds at one node, scanned in
//! value order with the left side's output sums kept in registers.

#[allow(unsafe_code)]
mod avx2;

pub(super) use avx2::Avx2;

use super::FEATURE_THRESHOLD;

/// Four outputs, so that the split scan's sums compile to vector instructions; the last lane of
/// a row is zero-padded, and zero outputs add nothing to any sum.
pub(super) type Lane = [f64; 4];

/// One feature's candidate splits at one node.
pub(super) struct Scan<'s> {
    /// The node's rows in this feature's value order, and their values.
    pub(super) order: &'s [u32],
    pub(super) values: &'s [f64],
    pub(super) weight: &'s [f64],
    pub(super) wy: &'s [Lane],
    pub(super) total: &'s [Lane],
    pub(super) lanes: usize,
    pub(super) min_leaf: usize,
    pub(super) w_node: f64,
}

impl Scan<'_> {
    /// The best candidate whose proxy beats `best_proxy`: (proxy, last left position). `left` is
    /// scratch of `lanes` lanes.
    ///
    /// Up to 16 outputs the loop is compiled for each lane count, so that the running sums stay in
    /// registers; given an [`Avx2`] token it runs on 256-bit registers. Every variant does the
    /// same operations in the same order (no fused multiply-add is enabled), so all give the same
    /// bits.
    pub(super) fn run(
        &self,
        left: &mut [Lane],
        best_proxy: f64,
        avx2: Option<Avx2>,
    ) -> Option<(f64, usize)> {
        if let Some(avx2) = avx2 {
            return self.run_avx2(left, best_proxy, avx2);
        }
        self.run_portable(left, best_proxy)
    }

    fn run_portable(&self, left: &mut [Lane], best_proxy: f64) -> Option<(f64, usize)> {
        match self.lanes {
            1 => self.fixed::<1>(best_proxy),
            2 => self.fixed::<2>(best_proxy),
            3 => self.fixed::<3>(best_proxy),
            4 => self.fixed::<4>(best_proxy),
            _ => self.any(left, best_proxy),
        }
    }

    #[inline(always)]
    fn fixed<const C: usize>(&self, mut best_proxy: f64) -> Option<(f64, usize)> {
        let values = self.values;
        let mut total = [[0.0; 4]; C];
        total.copy_from_slice(self.total);
        let mut left = [[0.0; 4]; C];
        let mut w_left = 0.0;
        let mut best = None;
        for pos in 0..values.len() - self.min_leaf {
            let j = self.order[pos] as usize;
            w_left += self.weight[j];
            let row = &self.wy[j * C..(j + 1) * C];
            for q in 0..C {
                for r in 0..4 {
                    left[q][r] += row[q][r];
                }
            }
            if pos + 1 < self.min_leaf || values[pos + 1] <= values[pos] + FEATURE_THRESHOLD {
                continue;
            }
            let (num, den) = split_proxy(&left, &total, w_left, self.w_node - w_left);
            // num/den > best, without a division on every candidate (den > 0)
            if num > best_proxy * den {
                best_proxy = num / den;
                best = Some((best_proxy, pos));
            }
        }
        best
    }

    #[inline(always)]
    fn any(&self, left: &mut [Lane], mut best_proxy: f64) -> Option<(f64, usize)> {
        let (c, values) = (self.lanes, self.values);
        left.fill([0.0; 4]);
        let mut w_left = 0.0;
        let mut best = None;
        for pos in 0..values.len() - self.min_leaf {
            let j = self.order[pos] as usize;
            w_left += self.weight[j];
            add_lanes(left, &self.wy[j * c..(j + 1) * c]);
            if pos + 1 < self.min_leaf || values[pos + 1] <= values[pos] + FEATURE_THRESHOLD {
                continue;
            }
            let (num, den) = split_proxy(left, self.total, w_left, self.w_node - w_left);
            if num > best_proxy * den {
                best_proxy = num / den;
                best = Some((best_proxy, pos));
            }
        }
        best
    }
}

#[inline(always)]
pub(super) fn add_lanes(acc: &mut [Lane], row: &[Lane]) {
    for (a, r) in acc.iter_mut().zip(row) {
        for q in 0..4 {
            a[q] += r[q];
        }
    }
}

/// Σₒ Lₒ²/w_L + Σₒ (Tₒ−Lₒ)²/w_R as a fraction (numerator, denominator), four outputs at a time.
#[inline(always)]
fn split_proxy(left: &[Lane], total: &[Lane], w_left: f64, w_right: f64) -> (f64, f64) {
    let mut sl = [0.0f64; 4];
    let mut sr = [0.0f64; 4];
    for (l, t) in left.iter().zip(total) {
        let mut r = [0.0f64; 4];
        for q in 0..4 {
            r[q] = t[q] - l[q];
        }
        for q in 0..4 {
            sl[q] += l[q] * l[q];
        }
        for q in 0..4 {
            sr[q] += r[q] * r[q];
        }
    }
    let sl = (sl[0] + sl[1]) + (sl[2] + sl[3]);
    let sr = (sr[0] + sr[1]) + (sr[2] + sr[3]);
    (sl * w_right + sr * w_left, w_left * w_right)
}
