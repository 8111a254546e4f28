//! Predicting: a descent per tree, then each leaf's weighted mean added with the very
//! operations the fit used, so that a prediction has the bits of one from stored means.

use ndarray::{Array2, ArrayView2, ArrayViewMut2};

use super::{LeafEntry, RandomForestError, RandomForestRegressor, RegressionTree, check_finite};
use crate::matrix::flat;
use crate::tree::Node;

impl RandomForestRegressor {
    /// Adds the value of `leaf` (a leaf of `tree`) to `out`, `n_outputs` values, with the bits
    /// the fit gave it.
    #[inline]
    pub fn add_leaf_value(&self, tree: &RegressionTree, leaf: &Node, out: &mut [f64]) {
        let k = self.n_outputs;
        if leaf.value == 0.0 {
            let at = leaf.child as usize * k;
            for (o, y) in out.iter_mut().zip(&self.targets[at..at + k]) {
                *o += y;
            }
        } else {
            let entries = tree.entries.get(leaf.child as usize..).unwrap_or(&[]);
            add_mean(entries, leaf.value, &self.targets, k, out);
        }
    }

    /// Predicts one row (`n_features` values) into `out` (`n_outputs` values), allocating nothing.
    pub fn predict_row(&self, x: &[f64], out: &mut [f64]) -> Result<(), RandomForestError> {
        self.check_widths(x.len(), out.len())?;
        check_finite("x", 0, x)?;
        self.predict_unchecked(x, out);
        Ok(())
    }

    /// Predicts every row of `x` (one column per feature) into the same row of `out` (one column
    /// per output). `x` in standard layout is read in place and `out` in standard layout written
    /// in place; views in other layouts cost a copy.
    pub fn predict_into(
        &self,
        x: ArrayView2<'_, f64>,
        mut out: ArrayViewMut2<'_, f64>,
    ) -> Result<(), RandomForestError> {
        self.check_widths(x.ncols(), out.ncols())?;
        if out.nrows() != x.nrows() {
            return Err(RandomForestError::RowMismatch {
                x_rows: x.nrows(),
                y_rows: out.nrows(),
            });
        }
        let x = flat(&x);
        for (r, row) in x.chunks_exact(self.n_features).enumerate() {
            check_finite("x", r, row)?;
        }
        match out.as_slice_mut() {
            Some(out) => self.predict_rows(&x, out),
            None => {
                let mut rows = vec![0.0; out.len()];
                self.predict_rows(&x, &mut rows);
                out.iter_mut().zip(rows).for_each(|(o, v)| *o = v);
            }
        }
        Ok(())
    }

    /// Predicts every row of `x` (one column per feature): one row of `n_outputs` per row.
    pub fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>, RandomForestError> {
        let mut out = Array2::zeros((x.nrows(), self.n_outputs));
        self.predict_into(x, out.view_mut())?;
        Ok(out)
    }

    /// Whether inputs of `features` values and outputs of `outputs` fit this forest.
    fn check_widths(&self, features: usize, outputs: usize) -> Result<(), RandomForestError> {
        if features != self.n_features {
            return Err(RandomForestError::FeatureCount {
                expected: self.n_features,
                got: features,
            });
        }
        if outputs != self.n_outputs {
            return Err(RandomForestError::OutputCount {
                expected: self.n_outputs,
                got: outputs,
            });
        }
        Ok(())
    }

    /// Predicts checked row-major `x` into row-major `out`.
    fn predict_rows(&self, x: &[f64], out: &mut [f64]) {
        for (row, o) in x
            .chunks_exact(self.n_features)
            .zip(out.chunks_exact_mut(self.n_outputs))
        {
            self.predict_unchecked(row, o);
        }
    }

    fn predict_unchecked(&self, x: &[f64], out: &mut [f64]) {
        /// Trees descended before their leaves are summed.
        const BATCH: usize = 32;
        out.fill(0.0);
        // Descending a batch of trees first keeps each descent's chain of loads apart from the
        // leaves' (node, entries, then table rows), so the CPU overlaps the descents; the
        // leaves are still added in tree order, which the bits depend on.
        let mut leaves = [None; BATCH];
        for trees in self.trees.chunks(BATCH) {
            for (slot, t) in leaves.iter_mut().zip(trees) {
                *slot = Some(t.tree.leaf(x));
            }
            for (leaf, t) in leaves.iter().zip(trees) {
                if let Some(leaf) = leaf {
                    self.add_leaf_value(t, leaf, out);
                }
            }
        }
        let scale = 1.0 / self.trees.len() as f64;
        for o in out {
            *o *= scale;
        }
    }
}

/// Adds the weighted mean of a leaf's entries (rows of `table`, `k` values each) to `out` (`k`
/// values): `entries` starts at the leaf's first and runs at least to its last, whose weights add
/// up to `weight`. The operations are the fit's: each product `weight · y` summed in entry order
/// from zero, then divided by the total, so the mean has the fit's bits.
#[inline]
pub(super) fn add_mean(
    entries: &[LeafEntry],
    weight: f64,
    table: &[f64],
    k: usize,
    out: &mut [f64],
) {
    // a loop of known length keeps the sums in registers, as vectors
    macro_rules! fixed {
        ($($k:literal)*) => {
            match k {
                $($k => return add_mean_of::<$k>(entries, weight, table, out),)*
                _ => {}
            }
        };
    }
    fixed!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);
    let total = weight as u64;
    for from in (0..k).step_by(16) {
        let width = 16.min(k - from);
        let mut acc = [0.0f64; 16];
        let mut seen = 0u64;
        for e in entries {
            let w = f64::from(e.weight);
            let at = e.row as usize * k + from;
            for (a, y) in acc[..width].iter_mut().zip(&table[at..at + width]) {
                *a += w * y;
            }
            seen += u64::from(e.weight);
            if seen >= total {
                break;
            }
        }
        for (o, a) in out[from..from + width].iter_mut().zip(&acc) {
            *o += a / weight;
        }
    }
}

#[inline(always)]
fn add_mean_of<const K: usize>(entries: &[LeafEntry], weight: f64, table: &[f64], out: &mut [f64]) {
    let total = weight as u64;
    let mut acc = [0.0f64; K];
    let mut seen = 0u64;
    for e in entries {
        let w = f64::from(e.weight);
        let at = e.row as usize * K;
        for (a, y) in acc.iter_mut().zip(&table[at..at + K]) {
            *a += w * y;
        }
        seen += u64::from(e.weight);
        if seen >= total {
            break;
        }
    }
    for (o, a) in out.iter_mut().zip(&acc) {
        *o += a / weight;
    }
}
