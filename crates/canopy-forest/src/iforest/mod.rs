//! The `anomaly-detector` model: an isolation forest with scikit-learn 1.9's `IsolationForest`
//! semantics, grown and scored on the flat trees of [`crate::tree`].
//!
//! This module owns fitting, scoring (`score_samples`, `decision_function`, `predict` and the
//! 0..1 `anomaly_score`), incremental retraining and per-feature explanations, one concern to a
//! file: `build` grows trees (fit and retrain), `score` descends them, `explain` attributes a
//! score to features, and `parts` takes a forest apart and puts it back together for checkpoints. It must not know
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

mod build;
mod explain;
mod parts;
mod score;
#[cfg(test)]
mod tests;

use thiserror::Error;

use crate::matrix::RaggedRows;
use crate::tree::{FlatTree, Node};

pub use parts::IsolationTreeParts;

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
    /// Flat values given as rows ([`crate::row_major`]) that do not make whole rows.
    #[error(transparent)]
    Ragged(#[from] RaggedRows),
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
