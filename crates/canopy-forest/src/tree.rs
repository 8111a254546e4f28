//! Flat tree storage shared by both forests.
//!
//! A tree is one `Vec<Node>` of 16-byte nodes, children stored as adjacent pairs (the right child
//! is always `left + 1`), so scoring a row is a tight loop over one contiguous array with no
//! pointer chasing and no allocation. The forests differ only in what a leaf carries: the
//! isolation forest keeps its path-length contribution in `value`; the random forest keeps its
//! first leaf entry (or its row of means) in `child` and the entries' total weight in `value`.

/// Marks a leaf in [`Node::feature`].
pub const LEAF: u32 = u32::MAX;

#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Node {
    /// The split feature, or [`LEAF`].
    pub feature: u32,
    /// Internal node: index of the left child (the right one is `child + 1`).
    /// Leaf: an index into the forest's own leaf payload table, if it has one.
    pub child: u32,
    /// Internal node: the threshold (a row goes left when `x[feature] <= value`, as in
    /// scikit-learn). Leaf: the forest's scalar leaf value, if it has one.
    pub value: f64,
}

impl Node {
    pub fn leaf(payload: u32, value: f64) -> Node {
        Node {
            feature: LEAF,
            child: payload,
            value,
        }
    }

    pub fn is_leaf(&self) -> bool {
        self.feature == LEAF
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct FlatTree {
    pub nodes: Vec<Node>,
}

impl FlatTree {
    /// The leaf that row `x` falls into. `x` must have every feature the tree splits on.
    #[inline]
    pub fn leaf(&self, x: &[f64]) -> &Node {
        let mut i = 0usize;
        loop {
            let node = &self.nodes[i];
            if node.is_leaf() {
                return node;
            }
            i = node.child as usize + usize::from(x[node.feature as usize] > node.value);
        }
    }

    /// The number of edges from the root to the leaf `x` falls into.
    pub fn depth_of(&self, x: &[f64]) -> usize {
        let (mut i, mut depth) = (0usize, 0usize);
        while !self.nodes[i].is_leaf() {
            let node = &self.nodes[i];
            i = node.child as usize + usize::from(x[node.feature as usize] > node.value);
            depth += 1;
        }
        depth
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_descend_left_on_less_or_equal() {
        // root splits feature 1 at 0.5; left leaf value 1.0, right leaf value 2.0
        let tree = FlatTree {
            nodes: vec![
                Node {
                    feature: 1,
                    child: 1,
                    value: 0.5,
                },
                Node::leaf(0, 1.0),
                Node::leaf(1, 2.0),
            ],
        };
        assert_eq!(tree.leaf(&[9.0, 0.5]).value, 1.0);
        assert_eq!(tree.leaf(&[9.0, 0.6]).value, 2.0);
        assert_eq!(tree.depth_of(&[0.0, 0.0]), 1);
    }
}
