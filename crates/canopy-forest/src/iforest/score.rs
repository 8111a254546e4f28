//! Scoring: one descent per tree, branch-free, several descents in lockstep, and batches
//! scored tree by tree over blocks of rows so that each tree is fetched once per block.

use ndarray::{Array1, ArrayView2};

use super::{IsolationForest, IsolationForestError, LANES, SCORE_BLOCK, check_finite, label};
use crate::matrix::flat;

impl IsolationForest {
    /// scikit-learn's `score_samples` of one row: −s, in [−1, 0), lower is more anomalous.
    pub fn score_sample(&self, row: &[f64]) -> Result<f64, IsolationForestError> {
        self.check_row(row, 0)?;
        Ok(-self.anomaly_score_unchecked(row))
    }

    /// `score_sample` − `offset_`: negative for anomalies.
    pub fn decision(&self, row: &[f64]) -> Result<f64, IsolationForestError> {
        Ok(self.score_sample(row)? - self.offset)
    }

    /// −1 for an anomaly, 1 for a normal row.
    pub fn predict_row(&self, row: &[f64]) -> Result<i8, IsolationForestError> {
        Ok(label(self.decision(row)?))
    }

    /// s in (0, 1], higher is more anomalous: what canopy exports as `canopy_anomaly_score`.
    pub fn anomaly_score(&self, row: &[f64]) -> Result<f64, IsolationForestError> {
        self.check_row(row, 0)?;
        Ok(self.anomaly_score_unchecked(row))
    }

    /// scikit-learn's `score_samples`, one per row of `rows`.
    pub fn score_samples(
        &self,
        rows: ArrayView2<'_, f64>,
    ) -> Result<Array1<f64>, IsolationForestError> {
        let mut out = Vec::new();
        self.score_samples_into(rows, &mut out)?;
        Ok(Array1::from(out))
    }

    /// `score_samples` into a caller's buffer (cleared first, one score per row), so a serving
    /// loop allocates nothing. `rows` in standard layout are read in place, others copied once.
    pub fn score_samples_into(
        &self,
        rows: ArrayView2<'_, f64>,
        out: &mut Vec<f64>,
    ) -> Result<(), IsolationForestError> {
        self.check_width(rows.ncols())?;
        let rows = flat(&rows);
        let n_rows = self.check_rows(&rows)?;
        out.clear();
        out.resize(n_rows, 0.0);
        self.score_block(&rows, out);
        Ok(())
    }

    /// scikit-learn's `decision_function`, one per row of `rows`.
    pub fn decision_function(
        &self,
        rows: ArrayView2<'_, f64>,
    ) -> Result<Array1<f64>, IsolationForestError> {
        let mut out = self.score_samples(rows)?;
        out.iter_mut().for_each(|v| *v -= self.offset);
        Ok(out)
    }

    /// scikit-learn's `predict`, one per row of `rows`: −1 anomaly, 1 normal.
    pub fn predict(&self, rows: ArrayView2<'_, f64>) -> Result<Array1<i8>, IsolationForestError> {
        Ok(self.decision_function(rows)?.mapv(label))
    }

    /// s in (0, 1], one per row of `rows`.
    pub fn anomaly_scores(
        &self,
        rows: ArrayView2<'_, f64>,
    ) -> Result<Array1<f64>, IsolationForestError> {
        let mut out = self.score_samples(rows)?;
        out.iter_mut().for_each(|v| *v = -*v);
        Ok(out)
    }

    /// s for a row already checked: one descent per tree, each leaf's value already the path,
    /// `LANES` trees at a time in lockstep.
    fn anomaly_score_unchecked(&self, row: &[f64]) -> f64 {
        let mut normalised = self.bias;
        for (trees, scales) in self.trees.chunks(LANES).zip(self.scales.chunks(LANES)) {
            let depth = trees.iter().map(|t| t.depth).max().unwrap_or(0);
            let mut at = [0usize; LANES];
            for _ in 0..depth {
                for (i, tree) in at.iter_mut().zip(trees) {
                    *i = tree.step(*i, row);
                }
            }
            for ((i, tree), scale) in at.iter().zip(trees).zip(scales) {
                normalised += tree.tree.nodes[*i].value * scale;
            }
        }
        (-normalised).exp2()
    }

    /// `score_samples` of checked row-major `rows` into `out` (one slot per row), tree by tree
    /// over blocks of rows.
    pub(super) fn score_block(&self, rows: &[f64], out: &mut [f64]) {
        let nf = self.n_features;
        for (block_rows, block_out) in rows
            .chunks(SCORE_BLOCK * nf)
            .zip(out.chunks_mut(SCORE_BLOCK))
        {
            block_out.iter_mut().for_each(|v| *v = self.bias);
            for (tree, &scale) in self.trees.iter().zip(&self.scales) {
                // `LANES` rows descend this tree in lockstep.
                for (rows, accs) in block_rows
                    .chunks(LANES * nf)
                    .zip(block_out.chunks_mut(LANES))
                {
                    let mut at = [0usize; LANES];
                    for _ in 0..tree.depth {
                        for (i, row) in at.iter_mut().zip(rows.chunks_exact(nf)) {
                            *i = tree.step(*i, row);
                        }
                    }
                    for (i, acc) in at.iter().zip(accs) {
                        *acc += tree.tree.nodes[*i].value * scale;
                    }
                }
            }
            block_out.iter_mut().for_each(|v| *v = -(-*v).exp2());
        }
    }

    pub(super) fn check_row(&self, row: &[f64], index: usize) -> Result<(), IsolationForestError> {
        self.check_width(row.len())?;
        check_finite(row, index)
    }

    pub(super) fn check_width(&self, found: usize) -> Result<(), IsolationForestError> {
        if found != self.n_features {
            return Err(IsolationForestError::FeatureCount {
                expected: self.n_features,
                found,
            });
        }
        Ok(())
    }

    /// The rows in row-major `rows` of this forest's width, once every value is checked finite.
    fn check_rows(&self, rows: &[f64]) -> Result<usize, IsolationForestError> {
        for (i, row) in rows.chunks_exact(self.n_features).enumerate() {
            check_finite(row, i)?;
        }
        Ok(rows.len() / self.n_features)
    }
}
