//! Growing trees: [`IsolationForest::fit`], [`IsolationForest::retrained`], and the estimate
//! of `offset_` on the training rows.

use std::ops::Range;

use ndarray::ArrayView2;

use super::{
    Contamination, FEATURE_THRESHOLD, IsolationForest, IsolationForestError, IsolationForestParams,
    IsolationTree, average_path_length, check_finite,
};
use crate::matrix::flat;
use crate::rng::Rng;
use crate::tree::Node;

impl IsolationForest {
    /// Fits a forest on the rows of `data`, as scikit-learn's `fit`. `data` in standard layout is
    /// read in place; a view in another layout is copied once.
    pub fn fit(
        params: &IsolationForestParams,
        data: ArrayView2<'_, f64>,
    ) -> Result<IsolationForest, IsolationForestError> {
        params.validate()?;
        let n_features = data.ncols();
        let data = flat(&data);
        let n_rows = check_training_rows(&data, n_features)?;
        let trees = grow_trees(
            params,
            &data,
            n_features,
            n_rows,
            0..params.n_estimators as u64,
            0,
        );
        Ok(IsolationForest::assemble(
            params.clone(),
            n_features,
            trees,
            0,
            params.n_estimators as u64,
            &data,
        ))
    }

    /// A new forest in which the oldest ⌈replace_fraction · n_estimators⌉ trees are replaced by
    /// trees grown on fresh subsamples of `training`, and `offset_` is re-estimated on
    /// `threshold_rows` (both with this forest's feature count; pass the same rows twice for
    /// scikit-learn's fit-and-threshold-on-one-set). `self` is left untouched for readers still
    /// holding it.
    pub fn retrained(
        &self,
        training: ArrayView2<'_, f64>,
        threshold_rows: ArrayView2<'_, f64>,
        replace_fraction: f64,
    ) -> Result<IsolationForest, IsolationForestError> {
        if !(replace_fraction > 0.0 && replace_fraction <= 1.0) {
            return Err(IsolationForestError::BadReplaceFraction(replace_fraction));
        }
        self.check_width(training.ncols())?;
        self.check_width(threshold_rows.ncols())?;
        let (training, threshold_rows) = (flat(&training), flat(&threshold_rows));
        let n_rows = check_training_rows(&training, self.n_features)?;
        check_training_rows(&threshold_rows, self.n_features)?;
        let n_trees = self.trees.len();
        let replace = ((replace_fraction * n_trees as f64).ceil() as usize).clamp(1, n_trees);
        let generation = self.generation + 1;
        let first = self.trees_grown;
        let fresh = grow_trees(
            &self.params,
            &training,
            self.n_features,
            n_rows,
            first..first + replace as u64,
            generation,
        );
        let mut trees = Vec::with_capacity(n_trees);
        trees.extend_from_slice(&self.trees[replace..]);
        trees.extend(fresh);
        Ok(IsolationForest::assemble(
            self.params.clone(),
            self.n_features,
            trees,
            generation,
            first + replace as u64,
            &threshold_rows,
        ))
    }

    /// Puts trees together into a forest and estimates `offset_` on `offset_data`, which must
    /// already be validated.
    pub(super) fn assemble(
        params: IsolationForestParams,
        n_features: usize,
        trees: Vec<IsolationTree>,
        generation: u64,
        trees_grown: u64,
        offset_data: &[f64],
    ) -> IsolationForest {
        let (scales, bias) = scales_and_bias(&trees);
        let mut forest = IsolationForest {
            params,
            n_features,
            trees,
            scales,
            bias,
            offset: -0.5,
            generation,
            trees_grown,
        };
        if let Contamination::Fraction(c) = forest.params.contamination {
            let mut scores = vec![0.0; offset_data.len() / n_features];
            forest.score_block(offset_data, &mut scores);
            forest.offset = percentile_linear(&mut scores, 100.0 * c);
        }
        forest
    }
}

/// Per tree, 1 / (n_trees · c(ψ)) (0 for a single-row tree), and the normalised path the
/// single-row trees contribute, which scikit-learn counts as 1 each.
pub(super) fn scales_and_bias(trees: &[IsolationTree]) -> (Vec<f64>, f64) {
    let n_trees = trees.len() as f64;
    let mut single_row_trees = 0usize;
    let scales = trees
        .iter()
        .map(|t| {
            let c = average_path_length(t.psi);
            if c > 0.0 {
                1.0 / (n_trees * c)
            } else {
                single_row_trees += 1;
                0.0
            }
        })
        .collect();
    // Counted, then divided once, so a forest of single-row trees scores exactly 2^−1.
    (scales, single_row_trees as f64 / n_trees)
}

/// Validates row-major training data of `n_features` columns and returns its row count.
fn check_training_rows(data: &[f64], n_features: usize) -> Result<usize, IsolationForestError> {
    if n_features == 0 {
        return Err(IsolationForestError::NoFeatures);
    }
    if data.is_empty() {
        return Err(IsolationForestError::EmptyData);
    }
    let n_rows = data.len() / n_features;
    // Sample and feature indices are stored as u32 in the trees and sampling scratch.
    for n in [n_rows, n_features] {
        if u32::try_from(n).is_err() {
            return Err(IsolationForestError::TooLarge(n));
        }
    }
    for (i, row) in data.chunks_exact(n_features).enumerate() {
        check_finite(row, i)?;
    }
    Ok(n_rows)
}

/// numpy's default (`method="linear"`) percentile, `q` in [0, 100], reproducing numpy's
/// arithmetic step by step so the threshold matches scikit-learn's to the last bit where possible.
pub(super) fn percentile_linear(values: &mut [f64], q: f64) -> f64 {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    let quantile = q / 100.0;
    // numpy's virtual index n·q + (α + q·(1 − α − β)) − 1 with α = β = 1, in numpy's order of
    // operations (not the algebraically equal q·(n − 1), which can round differently).
    let (alpha, beta) = (1.0, 1.0);
    let virtual_index = n as f64 * quantile + (alpha + quantile * (1.0 - alpha - beta)) - 1.0;
    let below = virtual_index.floor();
    let gamma = virtual_index - below;
    let last = (n - 1) as f64;
    let lo = values[below.clamp(0.0, last) as usize];
    let hi = values[(below + 1.0).clamp(0.0, last) as usize];
    let diff = hi - lo;
    // numpy's _lerp interpolates from the nearer end for accuracy.
    if gamma >= 0.5 {
        hi - diff * (1.0 - gamma)
    } else {
        lo + diff * gamma
    }
}

/// Grows the trees whose lifetime indices are `indices`, each from its own fork of the seed.
///
/// On one thread: on canopy's 2-core target, growing on both cores measured no faster than on
/// one while the other core was busy (and the agent keeps a core for serving while it trains),
/// so the thread pool would be complexity without a gain. Trees depend only on their index, so
/// growing them in parallel later changes no result.
fn grow_trees(
    params: &IsolationForestParams,
    data: &[f64],
    n_features: usize,
    n_rows: usize,
    indices: Range<u64>,
    generation: u64,
) -> Vec<IsolationTree> {
    let root = Rng::new(params.seed);
    let psi = params.max_samples.min(n_rows);
    let mut grower = TreeGrower::new(n_rows, n_features, psi, params.max_features);
    indices
        .map(|k| grower.grow(data, &mut root.fork(k), generation))
        .collect()
}

/// Reusable buffers for growing trees one after another on one thread.
pub(super) struct TreeGrower {
    n_rows: usize,
    n_features: usize,
    psi: usize,
    /// Features each tree sees.
    tree_features: usize,
    depth_limit: usize,
    scratch: Vec<u32>,
    sample: Vec<u32>,
    features: Vec<u32>,
    feature_scratch: Vec<u32>,
    /// The subsample, column-major over the tree's features, so a node's min/max scan and
    /// partition read one short column.
    columns: Vec<f64>,
    /// Positions into the subsample, partitioned node by node.
    order: Vec<u32>,
    /// Candidate features (positions in `features`) for the current node.
    candidates: Vec<u32>,
    stack: Vec<(usize, usize, usize, usize)>,
}

impl TreeGrower {
    pub(super) fn new(
        n_rows: usize,
        n_features: usize,
        psi: usize,
        max_features: f64,
    ) -> TreeGrower {
        let tree_features = ((max_features * n_features as f64) as usize).clamp(1, n_features);
        TreeGrower {
            n_rows,
            n_features,
            psi,
            tree_features,
            depth_limit: (psi.max(2) as f64).log2().ceil() as usize,
            scratch: Vec::new(),
            sample: Vec::with_capacity(psi),
            features: Vec::with_capacity(tree_features),
            feature_scratch: Vec::new(),
            columns: Vec::with_capacity(psi * tree_features),
            order: Vec::with_capacity(psi),
            candidates: Vec::with_capacity(tree_features),
            stack: Vec::new(),
        }
    }

    pub(super) fn grow(&mut self, data: &[f64], rng: &mut Rng, generation: u64) -> IsolationTree {
        let (psi, nf) = (self.psi, self.n_features);
        rng.sample_without_replacement(self.n_rows, psi, &mut self.scratch, &mut self.sample);
        if self.tree_features == nf {
            self.features.clear();
            self.features.extend(0..nf as u32);
        } else {
            rng.sample_without_replacement(
                nf,
                self.tree_features,
                &mut self.feature_scratch,
                &mut self.features,
            );
        }
        self.columns.clear();
        for &f in &self.features {
            self.columns.extend(
                self.sample
                    .iter()
                    .map(|&r| data[r as usize * nf + f as usize]),
            );
        }
        self.order.clear();
        self.order.extend(0..psi as u32);

        let mut nodes = vec![Node::leaf(0, 0.0)];
        let mut sizes = vec![psi as u32];
        self.stack.clear();
        self.stack.push((0, 0, psi, 0));
        while let Some((node, start, end, depth)) = self.stack.pop() {
            let n = end - start;
            let split = if n >= 2 && depth < self.depth_limit {
                self.draw_split(start, end, rng)
            } else {
                None
            };
            let Some((feature, threshold)) = split else {
                nodes[node] = Node::leaf(0, depth as f64 + average_path_length(n));
                continue;
            };
            let column = &self.columns[feature * psi..(feature + 1) * psi];
            let slice = &mut self.order[start..end];
            let mut left = 0;
            for i in 0..slice.len() {
                if column[slice[i] as usize] <= threshold {
                    slice.swap(i, left);
                    left += 1;
                }
            }
            let child = nodes.len();
            nodes[node] = Node {
                feature: self.features[feature],
                child: child as u32,
                value: threshold,
            };
            nodes.extend([Node::leaf(0, 0.0), Node::leaf(0, 0.0)]);
            sizes.extend([left as u32, (n - left) as u32]);
            self.stack.push((child + 1, start + left, end, depth + 1));
            self.stack.push((child, start, start + left, depth + 1));
        }
        IsolationTree::new(nodes, sizes, psi, generation)
    }

    /// A uniformly drawn non-constant feature (position in `features`) of the node's rows and a
    /// uniform threshold in [min, max) of it; `None` when every feature is constant.
    fn draw_split(&mut self, start: usize, end: usize, rng: &mut Rng) -> Option<(usize, f64)> {
        let psi = self.psi;
        self.candidates.clear();
        self.candidates.extend(0..self.features.len() as u32);
        // Draw features without replacement until one is not constant: the first found is
        // uniform among the non-constant ones, as scikit-learn's random splitter draws it.
        let mut remaining = self.candidates.len();
        while remaining > 0 {
            let pick = rng.below(remaining);
            let feature = self.candidates[pick] as usize;
            let column = &self.columns[feature * psi..(feature + 1) * psi];
            let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
            for &i in &self.order[start..end] {
                let v = column[i as usize];
                lo = lo.min(v);
                hi = hi.max(v);
            }
            if hi > lo + FEATURE_THRESHOLD {
                return Some((feature, rng.uniform(lo, hi)));
            }
            remaining -= 1;
            self.candidates.swap(pick, remaining);
        }
        None
    }
}
