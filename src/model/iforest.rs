//! The `anomaly-detector` model: an isolation forest with scikit-learn 1.9's `IsolationForest`
//! semantics, grown and scored on the flat trees of [`super::tree`].
//!
//! This module owns fitting, scoring (`score_samples`, `decision_function`, `predict` and the
//! 0..1 `anomaly_score`), incremental retraining and per-feature explanations. It must not know
//! where rows come from or where the forest is published: a forest is immutable once built, and
//! retraining returns a new one, so the caller can hand it to readers through `arc_swap::ArcSwap`
//! without any reader ever seeing a half-built model.
//!
//! # Semantics (scikit-learn 1.9)
//! - Each tree is grown on ψ = min(max_samples, n) rows drawn without replacement, up to depth
//!   ceil(log2 max(ψ, 2)). A node with fewer than two rows, or at the depth limit, is a leaf.
//!   Otherwise it splits on a feature drawn uniformly among those not constant in the node (a
//!   feature is constant when max ≤ min + 1e-7, scikit-learn's `FEATURE_THRESHOLD`) at a threshold
//!   drawn uniformly in [min, max); a row goes left when `x[feature] <= threshold`. A node whose
//!   features are all constant is a leaf.
//! - With `max_features` < 1 each tree sees max(1, ⌊max_features · n_features⌋) features drawn
//!   without replacement (scikit-learn's `bootstrap_features=False`).
//! - The path length of x in a tree is the number of edges to its leaf plus c(rows in the leaf),
//!   with c(n) = 2(ln(n−1) + γ) − 2(n−1)/n for n > 2, c(2) = 1, c(n ≤ 1) = 0, and γ to full f64
//!   precision as scikit-learn takes it from numpy (the often-quoted 0.5772156649 is rounded:
//!   3e-11 off in c(n)). Each leaf stores that
//!   sum in [`Node::value`], so scoring a row is one descent per tree and no arithmetic on the way.
//! - s(x) = 2^(−mean path / c(ψ)); `score_samples` = −s; `offset_` = −0.5 for
//!   [`Contamination::Auto`], else numpy's default (linear) percentile of the training rows'
//!   `score_samples` at 100·contamination; `decision_function` = `score_samples` − `offset_`;
//!   `predict` = −1 where `decision_function` < 0, else 1.
//!
//! Two deliberate differences, neither visible when a forest is fit once: scikit-learn casts data
//! to `f32` before growing and scoring, canopy keeps `f64`; and because incremental retraining can
//! mix trees grown on different ψ, each tree's path is normalised by its own c(ψ) before averaging,
//! which equals scikit-learn's mean path / c(ψ) whenever all trees share ψ. As in scikit-learn, a
//! tree grown on a single row (c(1) = 0) counts as a normalised path of 1.
//!
//! # Determinism
//! Tree number k (counted over the forest's whole life, retrains included) is grown from
//! `Rng::new(seed).fork(k)` alone, so the same data and seed give the same trees whichever thread
//! grows them.
//!
//! # Explanations
//! [`IsolationForest::explain`] attributes a row's score to features by its path. In a tree grown
//! on ψ rows, a node holding n training rows expects a row to need c(n) more edges to be isolated.
//! When a split on feature f sends the row to a child holding m rows, the row's expected remaining
//! path drops from c(n) to 1 + c(m); the split's gain is g = c(n) − 1 − c(m), positive when the
//! split isolates the row faster than an average split would. Along a path to a leaf at depth d
//! the gains telescope to c(ψ) − (d + c(leaf rows)) = c(ψ) − path length, so per tree they split
//! exactly "how much shorter than average this row's path is" among the features split on. Each
//! tree's gains are divided by its c(ψ) and averaged over trees, giving per-feature totals G_f that
//! sum to 1 − mean normalised path = 1 + log2 s(x). The contribution of f is max(G_f, 0) / Σ max(G, 0):
//! non-negative and summing to 1. A row no split isolates faster than average (every G_f ≤ 0, a
//! very normal row) has nothing to attribute, and gets equal contributions.

use std::ops::Range;

use thiserror::Error;

use super::rng::Rng;
use super::tree::{FlatTree, Node};

/// γ, the Euler–Mascheroni constant, to f64 precision (numpy's `np.euler_gamma`, which
/// scikit-learn uses in c(n)).
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// scikit-learn treats a feature as constant in a node when its range is at most this.
const FEATURE_THRESHOLD: f64 = 1e-7;

/// Rows scored per block in batch scoring: every tree walks the whole block before the next tree
/// is loaded, so a tree is fetched from memory once per block, and the block's rows and partial
/// sums stay in L1.
const SCORE_BLOCK: usize = 64;

/// Descents run in lockstep: this many (tree, row) pairs advance one level per round. Each
/// descent is a chain of dependent loads; interleaving independent chains lets the CPU overlap
/// their latencies (measured about twice as fast as one descent at a time on 100 trees).
const LANES: usize = 8;

/// c(n): the average path length of an unsuccessful search in a binary search tree of n rows,
/// the expected depth at which a row is isolated among n.
pub fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// How `offset_` is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Contamination {
    /// `offset_` = −0.5, the threshold of the original paper.
    Auto,
    /// The expected fraction of anomalies in the training data, in (0, 0.5].
    Fraction(f64),
}

#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForestParams {
    pub n_estimators: usize,
    pub max_samples: usize,
    /// Fraction of the features each tree sees, in (0, 1].
    pub max_features: f64,
    pub contamination: Contamination,
    pub seed: u64,
}

impl Default for IsolationForestParams {
    fn default() -> Self {
        IsolationForestParams {
            n_estimators: 100,
            max_samples: 256,
            max_features: 1.0,
            contamination: Contamination::Fraction(0.03),
            seed: 0,
        }
    }
}

impl IsolationForestParams {
    fn validate(&self) -> Result<(), IsolationForestError> {
        if self.n_estimators == 0 {
            return Err(IsolationForestError::NoEstimators);
        }
        if self.max_samples == 0 {
            return Err(IsolationForestError::NoMaxSamples);
        }
        if !(self.max_features > 0.0 && self.max_features <= 1.0) {
            return Err(IsolationForestError::BadMaxFeatures(self.max_features));
        }
        if let Contamination::Fraction(c) = self.contamination
            && !(c > 0.0 && c <= 0.5)
        {
            return Err(IsolationForestError::BadContamination(c));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Error)]
pub enum IsolationForestError {
    #[error("n_estimators must be at least 1")]
    NoEstimators,
    #[error("max_samples must be at least 1")]
    NoMaxSamples,
    #[error("max_features must be a fraction in (0, 1], got {0}")]
    BadMaxFeatures(f64),
    #[error("contamination must be \"auto\" or a fraction in (0, 0.5], got {0}")]
    BadContamination(f64),
    #[error("replace_fraction must be a fraction in (0, 1], got {0}")]
    BadReplaceFraction(f64),
    #[error("n_features must be at least 1")]
    NoFeatures,
    #[error("no rows to train on")]
    EmptyData,
    #[error("{len} values do not make whole rows of {n_features} features")]
    RaggedRows { len: usize, n_features: usize },
    #[error("a row has {found} features but the model expects {expected}")]
    FeatureCount { expected: usize, found: usize },
    #[error("row {row}, feature {feature} is {value}: every value must be finite")]
    NonFinite {
        row: usize,
        feature: usize,
        value: f64,
    },
    #[error("{0} rows or features exceed the 2^32 limit of the tree storage")]
    TooLarge(usize),
    #[error("a forest needs at least one tree")]
    NoTrees,
    #[error("invalid tree {tree}: {reason}")]
    BadTree { tree: usize, reason: String },
    #[error("offset_ is {0}: it must be finite")]
    BadOffset(f64),
}

/// One tree's stored parts, as a checkpoint holds them: what [`IsolationForest::from_parts`]
/// rebuilds a forest from.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationTreeParts {
    /// Children as adjacent pairs after their parent; leaves valued depth + c(rows). A leaf's
    /// `child` is ignored (it is recomputed).
    pub nodes: Vec<Node>,
    /// Training rows that reached each node, parallel to `nodes`.
    pub sizes: Vec<u32>,
    pub psi: usize,
    pub generation: u64,
}

/// One tree of the forest with what scoring and explaining need beside the nodes.
///
/// The isolation forest has no leaf payload table, so a leaf's `child` points at the leaf itself:
/// a descent of exactly `depth` steps then ends on the right leaf whatever its depth, and scoring
/// runs without a single data-dependent branch (see [`IsolationTree::path_length`]).
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationTree {
    /// Leaves hold depth + c(leaf rows) in `value` and their own index in `child`.
    tree: FlatTree,
    /// The depth of the deepest leaf.
    depth: u32,
    /// Training rows that reached each node (parallel to `tree.nodes`), for explanations.
    sizes: Vec<u32>,
    /// The rows this tree was grown on.
    psi: usize,
    /// The forest generation this tree was grown in: 0 at `fit`, k after the k-th retrain.
    generation: u64,
}

impl IsolationTree {
    /// A tree from its nodes (children as adjacent pairs, leaves valued depth + c(rows)) and the
    /// training rows reaching each node; points every leaf at itself and measures the depth.
    fn new(mut nodes: Vec<Node>, sizes: Vec<u32>, psi: usize, generation: u64) -> IsolationTree {
        let mut depth = 0;
        let mut stack = vec![(0usize, 0u32)];
        while let Some((i, d)) = stack.pop() {
            if nodes[i].is_leaf() {
                nodes[i].child = i as u32;
                depth = depth.max(d);
            } else {
                let child = nodes[i].child as usize;
                stack.extend([(child, d + 1), (child + 1, d + 1)]);
            }
        }
        IsolationTree {
            tree: FlatTree { nodes },
            depth,
            sizes,
            psi,
            generation,
        }
    }

    /// Rebuilds a tree from stored parts, checking everything scoring and explaining index
    /// with, so that a corrupt checkpoint is refused here and can never panic later: every split
    /// reads a feature the rows have, its children come after it and inside the array, every node
    /// but the root is the child of exactly one split (so the nodes form one tree and every
    /// descent ends at a leaf), and every value is finite.
    fn from_parts(parts: IsolationTreeParts, n_features: usize) -> Result<IsolationTree, String> {
        let IsolationTreeParts {
            nodes,
            sizes,
            psi,
            generation,
        } = parts;
        let n = nodes.len();
        if n == 0 {
            return Err("no nodes".into());
        }
        if u32::try_from(n).is_err() {
            return Err(format!("{n} nodes exceed the 2^32 limit"));
        }
        if sizes.len() != n {
            return Err(format!("{} node sizes for {n} nodes", sizes.len()));
        }
        if psi == 0 || u32::try_from(psi).is_err() {
            return Err(format!("grown on {psi} rows"));
        }
        let mut has_parent = vec![false; n];
        for (i, node) in nodes.iter().enumerate() {
            if !node.value.is_finite() {
                return Err(format!("node {i} has value {}", node.value));
            }
            if node.is_leaf() {
                continue;
            }
            let c = node.child as usize;
            if node.feature as usize >= n_features || c <= i || c + 1 >= n {
                return Err(format!(
                    "node {i} splits feature {} of {n_features} into children {c} of {n}",
                    node.feature
                ));
            }
            for k in [c, c + 1] {
                if std::mem::replace(&mut has_parent[k], true) {
                    return Err(format!("node {k} is the child of two splits"));
                }
            }
        }
        if let Some(orphan) = has_parent.iter().skip(1).position(|p| !p) {
            return Err(format!("node {} is not in the tree", orphan + 1));
        }
        Ok(IsolationTree::new(nodes, sizes, psi, generation))
    }

    pub fn nodes(&self) -> &[Node] {
        &self.tree.nodes
    }

    /// Training rows that reached each node, parallel to [`IsolationTree::nodes`].
    pub fn sizes(&self) -> &[u32] {
        &self.sizes
    }

    pub fn psi(&self) -> usize {
        self.psi
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Path length of `x`: edges to its leaf + c(rows in the leaf). `x` must have every feature.
    /// The same leaf as [`FlatTree::leaf`], reached in `depth` branch-free steps.
    pub fn path_length(&self, x: &[f64]) -> f64 {
        let mut i = 0usize;
        for _ in 0..self.depth {
            i = self.step(i, x);
        }
        self.tree.nodes[i].value
    }

    /// One level of descent from node `i`, without a data-dependent branch: a leaf steps onto
    /// itself, so any number of steps beyond a path's end is harmless and descents of different
    /// lengths can run in lockstep.
    #[inline(always)]
    fn step(&self, i: usize, x: &[f64]) -> usize {
        let node = &self.tree.nodes[i];
        let leaf = node.is_leaf();
        // A leaf reads feature 0 (always present) and ignores the comparison.
        let feature = if leaf { 0 } else { node.feature as usize };
        let right = !leaf & (x[feature] > node.value);
        node.child as usize + usize::from(right)
    }
}

/// A fitted isolation forest. Immutable: [`IsolationForest::retrained`] builds a new one.
#[derive(Debug, Clone, PartialEq)]
pub struct IsolationForest {
    params: IsolationForestParams,
    n_features: usize,
    /// Oldest first: retraining drops from the front and appends at the back.
    trees: Vec<IsolationTree>,
    /// Per tree, 1 / (n_estimators · c(ψ)), or 0 for a single-row tree (counted in `bias`).
    scales: Vec<f64>,
    /// The normalised path contributed by single-row trees, which scikit-learn counts as 1 each.
    bias: f64,
    offset: f64,
    generation: u64,
    /// Trees grown over the forest's life: the fork index of the next tree.
    trees_grown: u64,
}

impl IsolationForest {
    /// Fits a forest on row-major `data` of `n_features` columns, as scikit-learn's `fit`.
    pub fn fit(
        params: &IsolationForestParams,
        data: &[f64],
        n_features: usize,
    ) -> Result<IsolationForest, IsolationForestError> {
        params.validate()?;
        let n_rows = check_training_rows(data, n_features)?;
        let trees = grow_trees(
            params,
            data,
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
            data,
        ))
    }

    /// A new forest in which the oldest ⌈replace_fraction · n_estimators⌉ trees are replaced by
    /// trees grown on fresh subsamples of `training`, and `offset_` is re-estimated on
    /// `threshold_rows` (both row-major with this forest's feature count; pass the same rows twice
    /// for scikit-learn's fit-and-threshold-on-one-set). `self` is left untouched for readers
    /// still holding it.
    pub fn retrained(
        &self,
        training: &[f64],
        threshold_rows: &[f64],
        replace_fraction: f64,
    ) -> Result<IsolationForest, IsolationForestError> {
        if !(replace_fraction > 0.0 && replace_fraction <= 1.0) {
            return Err(IsolationForestError::BadReplaceFraction(replace_fraction));
        }
        let n_rows = check_training_rows(training, self.n_features)?;
        check_training_rows(threshold_rows, self.n_features)?;
        let n_trees = self.trees.len();
        let replace = ((replace_fraction * n_trees as f64).ceil() as usize).clamp(1, n_trees);
        let generation = self.generation + 1;
        let first = self.trees_grown;
        let fresh = grow_trees(
            &self.params,
            training,
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
            threshold_rows,
        ))
    }

    /// Rebuilds a forest from a checkpoint's parts, validating every tree (see
    /// [`IsolationTree`]'s checks) so that scoring, explaining or retraining it can never index
    /// out of bounds. Gives back exactly the forest the parts were taken from: same trees, same
    /// `offset_`, same generation and next tree index, hence the same scores and the same trees
    /// at the next retrain.
    pub fn from_parts(
        params: IsolationForestParams,
        n_features: usize,
        trees: Vec<IsolationTreeParts>,
        offset: f64,
        generation: u64,
        trees_grown: u64,
    ) -> Result<IsolationForest, IsolationForestError> {
        params.validate()?;
        if n_features == 0 {
            return Err(IsolationForestError::NoFeatures);
        }
        if trees.is_empty() {
            return Err(IsolationForestError::NoTrees);
        }
        if !offset.is_finite() {
            return Err(IsolationForestError::BadOffset(offset));
        }
        let trees = trees
            .into_iter()
            .enumerate()
            .map(|(tree, parts)| {
                IsolationTree::from_parts(parts, n_features)
                    .map_err(|reason| IsolationForestError::BadTree { tree, reason })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let (scales, bias) = scales_and_bias(&trees);
        Ok(IsolationForest {
            params,
            n_features,
            trees,
            scales,
            bias,
            offset,
            generation,
            trees_grown,
        })
    }

    /// Puts trees together into a forest and estimates `offset_` on `offset_data`, which must
    /// already be validated.
    fn assemble(
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

    pub fn params(&self) -> &IsolationForestParams {
        &self.params
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    /// scikit-learn's `offset_`.
    pub fn offset(&self) -> f64 {
        self.offset
    }

    /// Trees grown over the forest's life, retrains included: the RNG fork index of the next.
    pub fn trees_grown(&self) -> u64 {
        self.trees_grown
    }

    /// How many retrains built this forest: 0 after `fit`.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The trees, oldest first.
    pub fn trees(&self) -> &[IsolationTree] {
        &self.trees
    }

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

    /// scikit-learn's `score_samples` over row-major `rows`.
    pub fn score_samples(&self, rows: &[f64]) -> Result<Vec<f64>, IsolationForestError> {
        let mut out = Vec::new();
        self.score_samples_into(rows, &mut out)?;
        Ok(out)
    }

    /// `score_samples` into a caller's buffer (cleared first), so a serving loop allocates nothing.
    pub fn score_samples_into(
        &self,
        rows: &[f64],
        out: &mut Vec<f64>,
    ) -> Result<(), IsolationForestError> {
        let n_rows = self.check_rows(rows)?;
        out.clear();
        out.resize(n_rows, 0.0);
        self.score_block(rows, out);
        Ok(())
    }

    /// scikit-learn's `decision_function` over row-major `rows`.
    pub fn decision_function(&self, rows: &[f64]) -> Result<Vec<f64>, IsolationForestError> {
        let mut out = self.score_samples(rows)?;
        out.iter_mut().for_each(|v| *v -= self.offset);
        Ok(out)
    }

    /// scikit-learn's `predict` over row-major `rows`: −1 anomaly, 1 normal.
    pub fn predict(&self, rows: &[f64]) -> Result<Vec<i8>, IsolationForestError> {
        Ok(self
            .decision_function(rows)?
            .into_iter()
            .map(label)
            .collect())
    }

    /// s in (0, 1] for each row of row-major `rows`.
    pub fn anomaly_scores(&self, rows: &[f64]) -> Result<Vec<f64>, IsolationForestError> {
        let mut out = self.score_samples(rows)?;
        out.iter_mut().for_each(|v| *v = -*v);
        Ok(out)
    }

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
    fn score_block(&self, rows: &[f64], out: &mut [f64]) {
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

    fn check_row(&self, row: &[f64], index: usize) -> Result<(), IsolationForestError> {
        if row.len() != self.n_features {
            return Err(IsolationForestError::FeatureCount {
                expected: self.n_features,
                found: row.len(),
            });
        }
        check_finite(row, index)
    }

    fn check_rows(&self, rows: &[f64]) -> Result<usize, IsolationForestError> {
        if rows.len() % self.n_features != 0 {
            return Err(IsolationForestError::RaggedRows {
                len: rows.len(),
                n_features: self.n_features,
            });
        }
        for (i, row) in rows.chunks_exact(self.n_features).enumerate() {
            check_finite(row, i)?;
        }
        Ok(rows.len() / self.n_features)
    }
}

/// Per tree, 1 / (n_trees · c(ψ)) (0 for a single-row tree), and the normalised path the
/// single-row trees contribute, which scikit-learn counts as 1 each.
fn scales_and_bias(trees: &[IsolationTree]) -> (Vec<f64>, f64) {
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

fn label(decision: f64) -> i8 {
    if decision < 0.0 { -1 } else { 1 }
}

fn check_finite(row: &[f64], index: usize) -> Result<(), IsolationForestError> {
    match row.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(feature) => Err(IsolationForestError::NonFinite {
            row: index,
            feature,
            value: row[feature],
        }),
    }
}

/// Validates training data and returns its row count.
fn check_training_rows(data: &[f64], n_features: usize) -> Result<usize, IsolationForestError> {
    if n_features == 0 {
        return Err(IsolationForestError::NoFeatures);
    }
    if data.is_empty() {
        return Err(IsolationForestError::EmptyData);
    }
    if data.len() % n_features != 0 {
        return Err(IsolationForestError::RaggedRows {
            len: data.len(),
            n_features,
        });
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
fn percentile_linear(values: &mut [f64], q: f64) -> f64 {
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
struct TreeGrower {
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
    fn new(n_rows: usize, n_features: usize, psi: usize, max_features: f64) -> TreeGrower {
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

    fn grow(&mut self, data: &[f64], rng: &mut Rng, generation: u64) -> IsolationTree {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn params(seed: u64) -> IsolationForestParams {
        IsolationForestParams {
            seed,
            ..IsolationForestParams::default()
        }
    }

    /// 500 rows of 3 features, normal-ish from the seeded generator, plus one far outlier last.
    fn sample_data() -> Vec<f64> {
        let mut rng = Rng::new(11);
        let mut data: Vec<f64> = (0..500 * 3)
            .map(|_| (0..6).map(|_| rng.next_f64()).sum::<f64>() - 3.0)
            .collect();
        data.extend([8.0, -8.0, 8.0]);
        data
    }

    #[test]
    fn average_path_length_matches_the_formula() {
        assert_eq!(average_path_length(0), 0.0);
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        // Independently: c(n) = 2·H(n−1) − 2(n−1)/n with H(i) ≈ ln(i) + γ, γ written out in full.
        let n = 256.0_f64;
        let expected = 2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n;
        assert!((average_path_length(256) - expected).abs() < 1e-12);
        // c(3) = 2(ln 2 + γ) − 4/3.
        let c3 = 2.0 * (2.0_f64.ln() + 0.577_215_664_901_532_9) - 4.0 / 3.0;
        assert!((average_path_length(3) - c3).abs() < 1e-12);
        // The exact harmonic form agrees to the asymptotic error at large n: a sanity check
        // that the formula was transcribed with ln(n − 1), not ln(n).
        let harmonic: f64 = (1..1_000_000).map(|i| 1.0 / i as f64).sum();
        let exact = 2.0 * harmonic - 2.0 * 999_999.0 / 1_000_000.0;
        assert!((average_path_length(1_000_000) - exact).abs() < 1e-5);
    }

    /// A forest from hand-built trees, for checking scoring arithmetic without growing.
    fn hand_forest(
        trees: Vec<IsolationTree>,
        contamination: Contamination,
        offset_data: &[f64],
    ) -> IsolationForest {
        let n = trees.len();
        IsolationForest::assemble(
            IsolationForestParams {
                n_estimators: n,
                contamination,
                ..IsolationForestParams::default()
            },
            1,
            trees,
            0,
            n as u64,
            offset_data,
        )
    }

    /// Grown on ψ = 4 rows {0, 1, 2, 3}: root splits at 0.5 (1 row left), right at 2.5
    /// (2 rows left: depth 2 + c(2); 1 row right: depth 2 + c(1)).
    fn hand_tree() -> IsolationTree {
        IsolationTree::new(
            vec![
                Node {
                    feature: 0,
                    child: 1,
                    value: 0.5,
                },
                Node::leaf(0, 1.0 + average_path_length(1)),
                Node {
                    feature: 0,
                    child: 3,
                    value: 2.5,
                },
                Node::leaf(0, 2.0 + average_path_length(2)),
                Node::leaf(0, 2.0 + average_path_length(1)),
            ],
            vec![4, 1, 3, 2, 1],
            4,
            0,
        )
    }

    #[test]
    fn scores_follow_path_lengths_on_a_hand_built_forest() {
        let data = [0.0, 1.0, 2.0, 3.0];
        let forest = hand_forest(vec![hand_tree()], Contamination::Auto, &data);
        let c4 = average_path_length(4);
        let expected_paths = [1.0, 3.0, 3.0, 2.0];
        for (x, path) in data.iter().zip(expected_paths) {
            let s = 2f64.powf(-path / c4);
            assert!((forest.score_sample(&[*x]).unwrap() + s).abs() < 1e-15);
            assert!((forest.anomaly_score(&[*x]).unwrap() - s).abs() < 1e-15);
        }
        assert_eq!(forest.offset(), -0.5);
        // Two copies of the tree average to the same scores.
        let twice = hand_forest(vec![hand_tree(), hand_tree()], Contamination::Auto, &data);
        assert_eq!(
            twice.score_samples(&data).unwrap(),
            forest.score_samples(&data).unwrap()
        );
    }

    #[test]
    fn offset_is_numpys_linear_percentile_of_training_scores() {
        let data = [0.0, 1.0, 2.0, 3.0];
        let forest = hand_forest(vec![hand_tree()], Contamination::Fraction(0.5), &data);
        // Sorted scores −2^(−1/c4) < −2^(−2/c4) < −2^(−3/c4) = −2^(−3/c4); the 50th percentile of
        // four values sits halfway between the second and third.
        let c4 = average_path_length(4);
        let s = |p: f64| -(2f64.powf(-p / c4));
        let expected = 0.5 * (s(2.0) + s(3.0));
        assert!(
            (forest.offset() - expected).abs() < 1e-15,
            "{}",
            forest.offset()
        );
        // decision_function < 0 exactly for the two rows below the median.
        assert_eq!(forest.predict(&data).unwrap(), vec![-1, 1, 1, -1]);

        let mut v = [5.0, 1.0, 3.0, 2.0, 4.0];
        assert!((percentile_linear(&mut v, 3.0) - (1.0 + 0.03 * 4.0)).abs() < 1e-12);
        assert_eq!(percentile_linear(&mut v, 100.0), 5.0);
        assert_eq!(percentile_linear(&mut v, 0.0), 1.0);
    }

    #[test]
    fn grown_trees_respect_depth_limit_and_leaf_values() {
        let data = sample_data();
        let forest = IsolationForest::fit(&params(1), &data, 3).unwrap();
        assert_eq!(forest.trees().len(), 100);
        for tree in forest.trees() {
            assert_eq!(tree.psi(), 256);
            let nodes = tree.nodes();
            // Every leaf's value is depth + c(size); the leaves' sizes add up to ψ.
            let mut stack = vec![(0usize, 0usize)];
            let mut rows = 0;
            while let Some((i, depth)) = stack.pop() {
                assert!(depth <= 8);
                if nodes[i].is_leaf() {
                    let size = tree.sizes[i] as usize;
                    rows += size;
                    assert_eq!(nodes[i].value, depth as f64 + average_path_length(size));
                    assert!(
                        size == 1 || depth == 8,
                        "leaf of {size} rows at depth {depth}"
                    );
                } else {
                    let c = nodes[i].child as usize;
                    assert_eq!(tree.sizes[i], tree.sizes[c] + tree.sizes[c + 1]);
                    stack.extend([(c, depth + 1), (c + 1, depth + 1)]);
                }
            }
            assert_eq!(rows, 256);
        }
        // The branch-free descent ends on the same leaf as the flat tree's own.
        for tree in forest.trees() {
            for row in data.chunks_exact(3) {
                assert_eq!(tree.path_length(row), tree.tree.leaf(row).value);
            }
        }
        // The outlier is the most anomalous row, and it is flagged.
        let scores = forest.score_samples(&data).unwrap();
        let worst = (0..scores.len()).min_by(|&a, &b| scores[a].total_cmp(&scores[b]));
        assert_eq!(worst, Some(500));
        assert_eq!(forest.predict_row(&[8.0, -8.0, 8.0]).unwrap(), -1);
        // About 3% of the training rows fall below the offset.
        let flagged = forest
            .predict(&data)
            .unwrap()
            .iter()
            .filter(|&&p| p == -1)
            .count();
        assert!((14..=17).contains(&flagged), "{flagged}");
    }

    #[test]
    fn same_seed_gives_identical_forests_and_another_seed_does_not() {
        let data = sample_data();
        let a = IsolationForest::fit(&params(7), &data, 3).unwrap();
        let b = IsolationForest::fit(&params(7), &data, 3).unwrap();
        let c = IsolationForest::fit(&params(8), &data, 3).unwrap();
        assert_eq!(a, b);
        assert_ne!(a.trees()[0], c.trees()[0]);
        // Tree k depends on nothing but fork k of the seed, whatever was grown before it.
        let alone = TreeGrower::new(501, 3, 256, 1.0).grow(&data, &mut Rng::new(7).fork(57), 0);
        assert_eq!(alone, a.trees()[57]);
    }

    #[test]
    fn single_row_batch_and_unchecked_paths_agree() {
        let data = sample_data();
        let forest = IsolationForest::fit(&params(3), &data, 3).unwrap();
        let batch = forest.score_samples(&data).unwrap();
        let decisions = forest.decision_function(&data).unwrap();
        let anomaly = forest.anomaly_scores(&data).unwrap();
        for (i, row) in data.chunks_exact(3).enumerate() {
            let single = forest.score_sample(row).unwrap();
            assert!((single - batch[i]).abs() < 1e-15);
            assert_eq!(decisions[i], batch[i] - forest.offset());
            assert_eq!(anomaly[i], -batch[i]);
        }
    }

    #[test]
    fn retraining_replaces_the_oldest_trees_and_keeps_the_rest() {
        let data = sample_data();
        let forest = IsolationForest::fit(&params(5), &data, 3).unwrap();
        let shifted: Vec<f64> = data.iter().map(|v| v + 10.0).collect();
        let next = forest.retrained(&shifted, &shifted, 0.25).unwrap();
        assert_eq!(next.generation(), 1);
        assert_eq!(next.trees().len(), 100);
        assert_eq!(&next.trees()[..75], &forest.trees()[25..]);
        assert!(next.trees()[75..].iter().all(|t| t.generation() == 1));
        // The offset was re-estimated on the new set: ~3% of it is flagged again.
        let flagged = next
            .predict(&shifted)
            .unwrap()
            .iter()
            .filter(|&&p| p == -1)
            .count();
        assert!((14..=17).contains(&flagged), "{flagged}");
        // Retraining is deterministic too, and the old forest is untouched.
        assert_eq!(next, forest.retrained(&shifted, &shifted, 0.25).unwrap());
        assert_eq!(forest.generation(), 0);
        // A full replacement leaves no tree of generation 0.
        let full = forest.retrained(&shifted, &shifted, 1.0).unwrap();
        assert!(full.trees().iter().all(|t| t.generation() == 1));
    }

    #[test]
    fn single_row_training_scores_one_half_like_scikit_learn() {
        let forest = IsolationForest::fit(&params(0), &[1.0, 2.0], 2).unwrap();
        assert_eq!(forest.score_sample(&[5.0, 5.0]).unwrap(), -0.5);
    }

    #[test]
    fn bad_input_gives_errors_that_name_the_problem() {
        use IsolationForestError as E;
        let data = sample_data();
        let p = |f: fn(&mut IsolationForestParams)| {
            let mut p = params(0);
            f(&mut p);
            p
        };
        let fit = |p: &IsolationForestParams| IsolationForest::fit(p, &data, 3).err();
        assert_eq!(fit(&p(|p| p.n_estimators = 0)), Some(E::NoEstimators));
        assert_eq!(fit(&p(|p| p.max_samples = 0)), Some(E::NoMaxSamples));
        assert_eq!(
            fit(&p(|p| p.max_features = 0.0)),
            Some(E::BadMaxFeatures(0.0))
        );
        assert_eq!(
            fit(&p(|p| p.max_features = 1.5)),
            Some(E::BadMaxFeatures(1.5))
        );
        assert_eq!(
            fit(&p(|p| p.contamination = Contamination::Fraction(0.6))),
            Some(E::BadContamination(0.6))
        );
        assert!(matches!(
            fit(&p(|p| p.contamination = Contamination::Fraction(f64::NAN))),
            Some(E::BadContamination(_))
        ));
        let ok = params(0);
        assert_eq!(IsolationForest::fit(&ok, &[], 3).err(), Some(E::EmptyData));
        assert_eq!(
            IsolationForest::fit(&ok, &data, 0).err(),
            Some(E::NoFeatures)
        );
        assert_eq!(
            IsolationForest::fit(&ok, &data[..4], 3).err(),
            Some(E::RaggedRows {
                len: 4,
                n_features: 3
            })
        );
        let mut bad = data.clone();
        bad[7] = f64::INFINITY;
        assert_eq!(
            IsolationForest::fit(&ok, &bad, 3).err(),
            Some(E::NonFinite {
                row: 2,
                feature: 1,
                value: f64::INFINITY
            })
        );
        let forest = IsolationForest::fit(&ok, &data, 3).unwrap();
        assert_eq!(
            forest.score_sample(&[1.0, 2.0]).err(),
            Some(E::FeatureCount {
                expected: 3,
                found: 2
            })
        );
        assert!(matches!(
            forest.predict(&[0.0, 0.0, 0.0, 1.0, f64::NAN, 0.0]).err(),
            Some(E::NonFinite {
                row: 1,
                feature: 1,
                ..
            })
        ));
        assert_eq!(
            forest.explain(&[0.0]).err(),
            Some(E::FeatureCount {
                expected: 3,
                found: 1
            })
        );
        assert_eq!(
            forest.retrained(&data, &data, 0.0).err(),
            Some(E::BadReplaceFraction(0.0))
        );
        assert_eq!(
            forest.retrained(&data[..2], &data, 0.5).err(),
            Some(E::RaggedRows {
                len: 2,
                n_features: 3
            })
        );
        assert!(
            E::NonFinite {
                row: 2,
                feature: 1,
                value: f64::NAN
            }
            .to_string()
            .contains("finite")
        );
    }

    #[test]
    fn max_features_limits_each_tree_to_a_subset() {
        let data = sample_data();
        let p = IsolationForestParams {
            max_features: 0.4,
            ..params(2)
        };
        let forest = IsolationForest::fit(&p, &data, 3).unwrap();
        // ⌊0.4 · 3⌋ = 1 feature per tree, and across trees all three are used.
        let mut used = [false; 3];
        for tree in forest.trees() {
            let mut features: Vec<u32> = tree
                .nodes()
                .iter()
                .filter(|n| !n.is_leaf())
                .map(|n| n.feature)
                .collect();
            features.sort_unstable();
            features.dedup();
            assert_eq!(features.len(), 1);
            used[features[0] as usize] = true;
        }
        assert_eq!(used, [true; 3]);
    }

    #[test]
    fn constant_features_are_never_split_on() {
        let mut rng = Rng::new(4);
        let data: Vec<f64> = (0..300).flat_map(|_| [rng.next_f64(), 7.0]).collect();
        let forest = IsolationForest::fit(&params(0), &data, 2).unwrap();
        assert!(
            forest
                .trees()
                .iter()
                .all(|t| t.nodes().iter().all(|n| n.is_leaf() || n.feature == 0))
        );
        // All-constant data makes single-leaf trees holding ψ rows.
        let flat = vec![1.0; 40];
        let forest = IsolationForest::fit(&params(0), &flat, 2).unwrap();
        assert!(forest.trees().iter().all(|t| t.nodes().len() == 1));
        assert!((forest.score_sample(&[1.0, 1.0]).unwrap() + 0.5).abs() < 1e-12);
    }

    #[test]
    fn explanations_sum_to_one_and_point_at_the_odd_feature() {
        let data = sample_data();
        let forest = IsolationForest::fit(&params(9), &data, 3).unwrap();
        for feature in 0..3 {
            let mut row = [0.0; 3];
            row[feature] = 6.0;
            let contributions = forest.explain(&row).unwrap();
            assert!((contributions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            assert!(contributions.iter().all(|&c| c >= 0.0));
            let top = (0..3).max_by(|&a, &b| contributions[a].total_cmp(&contributions[b]));
            assert_eq!(top, Some(feature), "{contributions:?}");
        }
    }

    fn parts_of(forest: &IsolationForest) -> Vec<IsolationTreeParts> {
        forest
            .trees()
            .iter()
            .map(|t| IsolationTreeParts {
                nodes: t.nodes().to_vec(),
                sizes: t.sizes().to_vec(),
                psi: t.psi(),
                generation: t.generation(),
            })
            .collect()
    }

    #[test]
    fn a_forest_rebuilt_from_its_parts_is_the_same_forest_and_retrains_the_same() {
        let data = sample_data();
        let forest = IsolationForest::fit(&params(3), &data, 3).unwrap();
        let forest = forest.retrained(&data[..900], &data, 0.2).unwrap();
        let rebuilt = IsolationForest::from_parts(
            forest.params().clone(),
            3,
            parts_of(&forest),
            forest.offset(),
            forest.generation(),
            forest.trees_grown(),
        )
        .unwrap();
        assert_eq!(rebuilt, forest);
        assert_eq!(
            rebuilt.retrained(&data, &data, 0.1).unwrap(),
            forest.retrained(&data, &data, 0.1).unwrap()
        );
    }

    #[test]
    fn corrupt_parts_are_refused_never_a_panic() {
        let forest = IsolationForest::fit(&params(3), &sample_data(), 3).unwrap();
        let rebuild = |parts: Vec<IsolationTreeParts>| {
            IsolationForest::from_parts(forest.params().clone(), 3, parts, -0.5, 0, 100)
        };
        let split = |parts: &[IsolationTreeParts]| {
            parts[0]
                .nodes
                .iter()
                .position(|n| !n.is_leaf())
                .expect("a split")
        };
        let mut cases: Vec<(&str, Vec<IsolationTreeParts>)> = Vec::new();
        let mut p = parts_of(&forest);
        let i = split(&p);
        p[0].nodes[i].feature = 3;
        cases.push(("feature out of range", p));
        let mut p = parts_of(&forest);
        let i = split(&p);
        p[0].nodes[i].child = i as u32;
        cases.push(("child before its parent", p));
        let mut p = parts_of(&forest);
        let n = p[0].nodes.len();
        p[0].nodes[0].child = (n - 1) as u32;
        cases.push(("child pair past the end", p));
        let mut p = parts_of(&forest);
        p[0].nodes.truncate(1);
        p[0].nodes[0].feature = 0;
        p[0].nodes[0].child = 5;
        cases.push(("truncated nodes", p));
        let mut p = parts_of(&forest);
        p[0].sizes.pop();
        cases.push(("sizes not parallel", p));
        let mut p = parts_of(&forest);
        p[0].psi = 0;
        cases.push(("no rows", p));
        let mut p = parts_of(&forest);
        let leaf = p[0].nodes.iter().position(|n| n.is_leaf()).expect("leaf");
        p[0].nodes[leaf].value = f64::NAN;
        cases.push(("non-finite leaf", p));
        let mut p = parts_of(&forest);
        p[0].nodes.push(Node::leaf(0, 1.0));
        p[0].sizes.push(0);
        cases.push(("orphan node", p));
        cases.push(("no trees", Vec::new()));
        for (what, parts) in cases {
            assert!(rebuild(parts).is_err(), "{what} accepted");
        }
        assert!(
            IsolationForest::from_parts(
                forest.params().clone(),
                3,
                parts_of(&forest),
                f64::NAN,
                0,
                0
            )
            .is_err()
        );
    }
}
