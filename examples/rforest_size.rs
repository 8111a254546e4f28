//! The default forecaster's size in memory and in its checkpoint, with its leaves as canopy
//! stores them (naming rows of one shared target table) and as format 1 stored them (every
//! leaf's `n_outputs` means), both computed in this run from the same fitted forest: the format 1
//! memory by its layout (16 bytes a node, 8 per leaf value), its file by encoding the format 1
//! fields as `tests/checkpoint.rs` does.
//!
//! The forest is `predictive-analytics`' default (100 trees, depth 20, split 5, leaf 2) on the
//! data of `benches/checkpoint.rs`: 30 days of 5 node-like features at 5 minutes, windows of 24
//! steps → the next 12 cpu values (8,605 rows of 120 → 12).
//!
//! Usage: `cargo run --release --example rforest_size`

use canopy::checkpoint::format::{OLDEST_FORMAT_VERSION, frame};
use canopy::checkpoint::{SavedData, encode, proto};
use canopy::model::matrix::row_major;
use canopy::model::rforest::{RandomForestParams, RandomForestRegressor};
use canopy::model::tree::Node;
use prost::Message;

#[path = "../benches/payload/models.rs"]
mod models;
use models::{default_forest, forecaster};

/// The checkpoint message with the forest's leaves as format 1 stored them: each leaf's means,
/// its node's `child` its index among its tree's leaves.
fn as_format_1(forest: &RandomForestRegressor, message: &mut proto::Checkpoint) {
    let Some(proto::checkpoint::Model::RandomForest(f)) = &mut message.model else {
        unreachable!("a forecaster's checkpoint holds a random forest")
    };
    let trees = f.trees.as_mut().expect("trees");
    let k = forest.n_outputs();
    let (mut at, mut counts, mut values) = (0, Vec::new(), Vec::new());
    for t in forest.trees() {
        let before = values.len();
        for (i, node) in t.tree.nodes.iter().enumerate().filter(|(_, n)| n.is_leaf()) {
            trees.child[at + i] = ((values.len() - before) / k) as u32;
            let from = values.len();
            values.resize(from + k, 0.0);
            forest.add_leaf_value(t, node, &mut values[from..]);
        }
        at += t.tree.nodes.len();
        counts.push((values.len() - before) as u32);
    }
    (f.leaf_value_counts, f.leaf_values) = (counts, values);
    f.targets.clear();
    f.entry_counts.clear();
    f.entry_rows.clear();
    f.entry_weights.clear();
}

fn forest_bytes(message: &proto::Checkpoint) -> usize {
    match &message.model {
        Some(proto::checkpoint::Model::RandomForest(f)) => f.encoded_len(),
        _ => 0,
    }
}

fn mb(bytes: usize) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

fn main() {
    let params = RandomForestParams::default();
    let (forest, history, w) = default_forest(&params);

    let k = forest.n_outputs();
    let nodes: Vec<&Node> = forest.trees().iter().flat_map(|t| &t.tree.nodes).collect();
    let leaves: Vec<&&Node> = nodes.iter().filter(|n| n.is_leaf()).collect();
    let naming = leaves.iter().filter(|n| n.value != 0.0).count();
    let entries: usize = forest.trees().iter().map(|t| t.entries.len()).sum();
    println!(
        "{} training rows of {} → {k}, {} trees: {} nodes, {} leaves ({naming} name {entries} rows, \
         {:.2} each; {} hold their mean), a table of {} rows",
        w.rows(),
        forest.n_features(),
        forest.trees().len(),
        nodes.len(),
        leaves.len(),
        entries as f64 / naming.max(1) as f64,
        leaves.len() - naming,
        forest.targets().len() / k,
    );

    let node_bytes = nodes.len() * std::mem::size_of::<Node>();
    let means_bytes = node_bytes + leaves.len() * k * 8;
    let shared_bytes = forest.heap_bytes();
    println!(
        "memory: format 1 layout {} (nodes {}, leaf means {}); shared leaves {} (entries {}, \
         table {}): {:.3} of format 1",
        mb(means_bytes),
        mb(node_bytes),
        mb(leaves.len() * k * 8),
        mb(shared_bytes),
        mb(entries * 8),
        mb(forest.targets().len() * 8),
        shared_bytes as f64 / means_bytes as f64,
    );

    let model = forecaster(forest, history);
    let SavedData::Forecaster { forest, .. } = &model.data else {
        unreachable!("built as a forecaster")
    };
    let file = encode(&model);
    let mut old = model.to_proto();
    let forest_new = forest_bytes(&old);
    as_format_1(forest, &mut old);
    let forest_old = forest_bytes(&old);
    let old_file = frame(&old.encode_to_vec(), OLDEST_FORMAT_VERSION);
    println!(
        "checkpoint: format 1 {} (forest {}); format 2 {} (forest {}): {:.3} of format 1 \
         (forest {:.3}); the 8,640 × 5 history is {} of each",
        mb(old_file.len()),
        mb(forest_old),
        mb(file.len()),
        mb(forest_new),
        file.len() as f64 / old_file.len() as f64,
        forest_new as f64 / forest_old as f64,
        mb(old_file.len() - forest_old),
    );
    let back = canopy::checkpoint::decode(&old_file).expect("the format 1 file decodes");
    let SavedData::Forecaster { forest: old, .. } = &back.data else {
        unreachable!("decoded from a forecaster")
    };
    let rows = row_major(&w.x[..1000 * 120], 120).expect("1,000 windows of 120");
    let (a, b) = (forest.predict(rows), old.predict(rows));
    assert!(a == b, "the two layouts predict the same bits");
}
