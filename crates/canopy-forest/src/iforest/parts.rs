//! A forest taken apart into what a checkpoint stores, and put back together with every index
//! checked, so that a corrupt checkpoint is refused on load and can never panic later.

use super::build::scales_and_bias;
use super::{IsolationForest, IsolationForestError, IsolationForestParams, IsolationTree};
use crate::tree::Node;

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

impl IsolationTree {
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
}

impl IsolationForest {
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
}
