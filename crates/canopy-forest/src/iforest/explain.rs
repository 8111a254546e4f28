//! Per-feature explanations of a score by path-gain attribution (the method is in the module
//! documentation of [`super`]).

use super::{IsolationForest, IsolationForestError, average_path_length};

impl IsolationForest {
    /// Per-feature contributions to `row`'s anomaly score: non-negative, summing to 1. The method
    /// (path-gain attribution) is described in the module documentation.
    pub fn explain(&self, row: &[f64]) -> Result<Vec<f64>, IsolationForestError> {
        self.check_row(row, 0)?;
        let mut gains = vec![0.0; self.n_features];
        for tree in &self.trees {
            let c_psi = average_path_length(tree.psi);
            if c_psi <= 0.0 {
                continue;
            }
            let scale = 1.0 / (c_psi * self.trees.len() as f64);
            let nodes = &tree.tree.nodes;
            let mut i = 0usize;
            while !nodes[i].is_leaf() {
                let node = &nodes[i];
                let next =
                    node.child as usize + usize::from(row[node.feature as usize] > node.value);
                let gain = average_path_length(tree.sizes[i] as usize)
                    - 1.0
                    - average_path_length(tree.sizes[next] as usize);
                gains[node.feature as usize] += gain * scale;
                i = next;
            }
        }
        gains.iter_mut().for_each(|g| *g = g.max(0.0));
        let total: f64 = gains.iter().sum();
        if total > 0.0 {
            gains.iter_mut().for_each(|g| *g /= total);
        } else {
            let even = 1.0 / self.n_features as f64;
            gains.iter_mut().for_each(|g| *g = even);
        }
        Ok(gains)
    }
}
