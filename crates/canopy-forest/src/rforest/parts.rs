//! A forest rebuilt from a checkpoint's parts, refused unless every index a prediction would
//! follow is inside its arrays.

use super::{
    RandomForestError, RandomForestParams, RandomForestRegressor, RegressionTree, check_matrix,
};
use crate::tree::Node;

impl RandomForestRegressor {
    /// Rebuilds a model from its parts (a checkpoint), checking that every tree is well formed so
    /// that predicting can never index out of bounds: `targets` holds whole rows of `n_outputs`,
    /// and every leaf's entries refer to rows of it and add up to the leaf's weight.
    pub fn from_parts(
        params: RandomForestParams,
        n_features: usize,
        n_outputs: usize,
        targets: Vec<f64>,
        trees: Vec<RegressionTree>,
    ) -> Result<Self, RandomForestError> {
        if trees.is_empty() {
            return Err(RandomForestError::BadParam(
                "a forest needs at least one tree".into(),
            ));
        }
        if n_outputs == 0 {
            return Err(RandomForestError::BadParam(
                "n_outputs must be at least 1".into(),
            ));
        }
        let rows = check_matrix("targets", &targets, n_outputs)?;
        for (i, t) in trees.iter().enumerate() {
            validate_tree(t, n_features, rows)
                .map_err(|reason| RandomForestError::BadTree { tree: i, reason })?;
        }
        Ok(RandomForestRegressor {
            params,
            n_features,
            n_outputs,
            targets,
            trees,
        })
    }
}

fn validate_tree(t: &RegressionTree, n_features: usize, rows: usize) -> Result<(), String> {
    let nodes = &t.tree.nodes;
    if nodes.is_empty() {
        return Err("no nodes".into());
    }
    for (i, node) in nodes.iter().enumerate() {
        if node.is_leaf() {
            validate_leaf(t, i, node, rows)?;
        } else {
            // children must come after their parent, so that every descent ends at a leaf
            let c = node.child as usize;
            if node.feature as usize >= n_features || c <= i || c + 1 >= nodes.len() {
                return Err(format!(
                    "node {i} has feature {} and children {c}",
                    node.feature
                ));
            }
        }
    }
    Ok(())
}

/// Checks that a leaf holding its mean names a row of the table, or that a leaf's weight is a
/// whole number and its entries, from its first, name rows of the table and add up to exactly
/// that weight within the tree's entries.
fn validate_leaf(t: &RegressionTree, i: usize, leaf: &Node, rows: usize) -> Result<(), String> {
    let weight = leaf.value;
    if weight == 0.0 {
        return match leaf.child as usize {
            row if row < rows => Ok(()),
            row => Err(format!("leaf node {i} holds row {row} of {rows}")),
        };
    }
    // up to 2^53 every whole number is an f64, so the entries' sum is exactly the divisor
    if !(weight >= 1.0 && weight <= (1u64 << 53) as f64 && weight.fract() == 0.0) {
        return Err(format!(
            "leaf node {i} has weight {weight}: a leaf's weight is a whole number of rows (0 for \
             a leaf that holds its mean)"
        ));
    }
    let first = leaf.child as usize;
    if first >= t.entries.len() {
        return Err(format!(
            "leaf node {i} starts at entry {first} of {}",
            t.entries.len()
        ));
    }
    let (weight, mut sum) = (weight as u64, 0u64);
    for (at, e) in t.entries[first..].iter().enumerate() {
        if e.row as usize >= rows || e.weight == 0 {
            return Err(format!(
                "leaf node {i}: entry {} refers to row {} of {rows} with weight {}",
                first + at,
                e.row,
                e.weight
            ));
        }
        sum += u64::from(e.weight);
        if sum >= weight {
            return if sum == weight {
                Ok(())
            } else {
                Err(format!(
                    "leaf node {i}: its entries' weights pass its weight {weight} without reaching it"
                ))
            };
        }
    }
    Err(format!(
        "leaf node {i}: its entries' weights add up to {sum}, short of its weight {weight}"
    ))
}
