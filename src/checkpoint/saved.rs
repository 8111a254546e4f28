//! [`SavedModel`]: what one checkpoint holds, in canopy's own types, and its conversion to and
//! from the protobuf message. Converting from protobuf validates everything (lengths of the
//! parallel arrays, every tree index, the parameters) so that a decoded model can be served,
//! retrained and refilled without any further check.

use std::sync::Arc;

use super::CheckpointError;
use super::proto;
use crate::live::TrainingInfo;
use crate::live::detector::Detector;
use crate::live::forecaster::Forecaster;
use crate::model::iforest::{Contamination, IsolationForest, IsolationTreeParts};
use crate::model::rforest::{LeafEntry, RandomForestParams, RandomForestRegressor, RegressionTree};
use crate::model::tree::{FlatTree, Node};
use crate::series::Labels;

/// One model as a checkpoint holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedModel {
    pub name: String,
    /// Feature names, in the order a row carries them.
    pub features: Vec<String>,
    /// Each feature's PromQL expression as configured (trimmed), parallel to `features`; empty
    /// for a file written before canopy recorded them.
    pub expressions: Vec<String>,
    pub step_ms: i64,
    pub retrain_interval_ms: i64,
    pub max_age_ms: u64,
    pub training: TrainingInfo,
    pub data: SavedData,
}

/// The model and the data it retrains from.
#[derive(Debug, Clone, PartialEq)]
pub enum SavedData {
    Detector {
        forest: Arc<IsolationForest>,
        replace_fraction: f64,
        reservoir_size: usize,
        gate_anomalies: bool,
        reservoir: SavedReservoir,
    },
    Forecaster {
        forest: Arc<RandomForestRegressor>,
        targets: Vec<String>,
        lookback: usize,
        horizon: usize,
        history: Vec<SavedEntity>,
    },
}

/// The detector's reservoir, oldest first.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SavedReservoir {
    /// Row-major, one row per timestamp.
    pub values: Vec<f64>,
    pub timestamps_ms: Vec<i64>,
    pub trainable: Vec<bool>,
}

/// One entity's feature history at the forecaster's step, oldest first.
#[derive(Debug, Clone, PartialEq)]
pub struct SavedEntity {
    pub labels: Labels,
    pub timestamps_ms: Vec<i64>,
    /// Row-major, one row per timestamp; NaN marks a gap.
    pub values: Vec<f64>,
}

impl SavedModel {
    /// `isolation_forest` or `random_forest`, as the config names kinds.
    pub(crate) fn kind(&self) -> &'static str {
        match self.data {
            SavedData::Detector { .. } => "isolation_forest",
            SavedData::Forecaster { .. } => "random_forest",
        }
    }

    /// The oldest format version that reads this model, which its file is written with: a
    /// detector's layout is format 1's, a forecaster's leaves need format 2.
    pub(crate) fn format_version(&self) -> u32 {
        match self.data {
            SavedData::Detector { .. } => super::format::OLDEST_FORMAT_VERSION,
            SavedData::Forecaster { .. } => super::format::FORMAT_VERSION,
        }
    }

    /// A snapshot of a live detector: its published forest (taken lock-free) and a copy of its
    /// reservoir. `None` while no forest is published.
    pub(crate) fn of_detector(d: &Detector) -> Option<SavedModel> {
        let forest = d.published().load_full()?;
        let spec = d.spec();
        let r = d.reservoir();
        Some(SavedModel {
            name: spec.name.clone(),
            features: spec.features.clone(),
            expressions: spec.expressions.clone(),
            step_ms: spec.step_ms,
            retrain_interval_ms: spec.retrain_interval_ms,
            max_age_ms: spec.max_age_ms,
            training: (*d.training_info()).clone(),
            data: SavedData::Detector {
                forest,
                replace_fraction: spec.replace_fraction,
                reservoir_size: spec.reservoir_size,
                gate_anomalies: spec.gate_anomalies,
                reservoir: SavedReservoir {
                    values: r.values().collect(),
                    timestamps_ms: r.timestamps().collect(),
                    trainable: r.trainable().collect(),
                },
            },
        })
    }

    /// A snapshot of a live forecaster: its published forest and a copy of every entity's
    /// history. `None` while no forest is published.
    pub(crate) fn of_forecaster(f: &Forecaster) -> Option<SavedModel> {
        let forest = f.published().load_full()?;
        let spec = f.spec();
        let history = f
            .history()
            .entities()
            .map(|(labels, rows)| SavedEntity {
                labels: labels.clone(),
                timestamps_ms: rows.t.iter().copied().collect(),
                values: rows.v.iter().copied().collect(),
            })
            .collect();
        Some(SavedModel {
            name: spec.name.clone(),
            features: spec.features.clone(),
            expressions: spec.expressions.clone(),
            step_ms: spec.step_ms,
            retrain_interval_ms: spec.retrain_interval_ms,
            max_age_ms: spec.max_rows as u64 * spec.step_ms.max(0) as u64,
            training: (*f.training_info()).clone(),
            data: SavedData::Forecaster {
                forest,
                targets: spec.targets.clone(),
                lookback: spec.window.lookback,
                horizon: spec.window.horizon,
                history,
            },
        })
    }

    pub fn to_proto(&self) -> proto::Checkpoint {
        let (kind, params, model, data) = match &self.data {
            SavedData::Detector {
                forest,
                replace_fraction,
                reservoir_size,
                gate_anomalies,
                reservoir,
            } => {
                let p = forest.params();
                let (auto, fraction) = match p.contamination {
                    Contamination::Auto => (true, 0.0),
                    Contamination::Fraction(f) => (false, f),
                };
                let params =
                    proto::model_config::Params::IsolationForest(proto::IsolationForestParams {
                        n_estimators: p.n_estimators as u64,
                        max_samples: p.max_samples as u64,
                        max_features: p.max_features,
                        contamination_auto: auto,
                        contamination: fraction,
                        replace_fraction: *replace_fraction,
                        reservoir_size: *reservoir_size as u64,
                        gate_anomalies: *gate_anomalies,
                    });
                let trees = forest.trees();
                let model = proto::checkpoint::Model::IsolationForest(proto::IsolationForest {
                    n_features: forest.n_features() as u64,
                    offset: forest.offset(),
                    generation: forest.generation(),
                    trees_grown: forest.trees_grown(),
                    trees: Some(flat_trees(trees.iter().map(|t| t.nodes()))),
                    psi: trees.iter().map(|t| t.psi() as u64).collect(),
                    tree_generation: trees.iter().map(|t| t.generation()).collect(),
                    sizes: trees.iter().flat_map(|t| t.sizes()).copied().collect(),
                });
                let data = proto::checkpoint::Data::Reservoir(proto::Reservoir {
                    n_features: self.features.len() as u64,
                    values: reservoir.values.clone(),
                    timestamps_ms: reservoir.timestamps_ms.clone(),
                    trainable: reservoir.trainable.clone(),
                });
                (proto::ModelKind::IsolationForest, params, model, data)
            }
            SavedData::Forecaster {
                forest,
                targets,
                lookback,
                horizon,
                history,
            } => {
                let p = forest.params();
                let params = proto::model_config::Params::RandomForest(proto::RandomForestParams {
                    n_estimators: p.n_estimators as u64,
                    max_depth: p.max_depth.map_or(0, |d| d as u64),
                    min_samples_split: p.min_samples_split as u64,
                    min_samples_leaf: p.min_samples_leaf as u64,
                    max_features: p.max_features,
                    bootstrap: p.bootstrap,
                    targets: targets.clone(),
                    lookback: *lookback as u64,
                    horizon: *horizon as u64,
                });
                let trees = forest.trees();
                let model = proto::checkpoint::Model::RandomForest(proto::RandomForest {
                    n_features: forest.n_features() as u64,
                    n_outputs: forest.n_outputs() as u64,
                    trees: Some(flat_trees(trees.iter().map(|t| t.tree.nodes.as_slice()))),
                    targets: forest.targets().to_vec(),
                    entry_counts: trees.iter().map(|t| t.entries.len() as u32).collect(),
                    entry_rows: trees
                        .iter()
                        .flat_map(|t| &t.entries)
                        .map(|e| e.row)
                        .collect(),
                    entry_weights: (trees.iter().flat_map(|t| &t.entries))
                        .map(|e| e.weight)
                        .collect(),
                    ..Default::default()
                });
                let data = proto::checkpoint::Data::History(proto::EntityHistory {
                    n_features: self.features.len() as u64,
                    entities: history
                        .iter()
                        .map(|e| proto::Entity {
                            labels: e
                                .labels
                                .iter()
                                .map(|(name, value)| proto::Label {
                                    name: name.to_owned(),
                                    value: value.to_owned(),
                                })
                                .collect(),
                            timestamps_ms: e.timestamps_ms.clone(),
                            values: e.values.clone(),
                        })
                        .collect(),
                });
                (proto::ModelKind::RandomForest, params, model, data)
            }
        };
        let seed = match &self.data {
            SavedData::Detector { forest, .. } => forest.params().seed,
            SavedData::Forecaster { forest, .. } => forest.params().seed,
        };
        proto::Checkpoint {
            model_name: self.name.clone(),
            kind: kind as i32,
            config: Some(proto::ModelConfig {
                features: self.features.clone(),
                expressions: self.expressions.clone(),
                step_ms: self.step_ms,
                seed,
                retrain_interval_ms: self.retrain_interval_ms,
                max_age_ms: self.max_age_ms,
                params: Some(params),
            }),
            model: Some(model),
            data: Some(data),
            training: Some(proto::TrainingInfo {
                source: self.training.source.clone(),
                trained_at_ms: self.training.trained_at_ms.unwrap_or(0),
                has_trained_at: self.training.trained_at_ms.is_some(),
                generation: self.training.generation,
            }),
        }
    }

    /// The model in a decoded message, validated whole.
    pub(crate) fn from_proto(m: proto::Checkpoint) -> Result<SavedModel, CheckpointError> {
        let config = m.config.ok_or_else(|| invalid("no model config"))?;
        let nf = config.features.len();
        if nf == 0 {
            return Err(invalid("the model has no features"));
        }
        if !config.expressions.is_empty() && config.expressions.len() != nf {
            return Err(invalid(format!(
                "{nf} features but {} expressions",
                config.expressions.len()
            )));
        }
        let training = m.training.unwrap_or_default();
        let training = TrainingInfo {
            source: training.source,
            trained_at_ms: training.has_trained_at.then_some(training.trained_at_ms),
            generation: training.generation,
        };
        let kind = proto::ModelKind::try_from(m.kind).unwrap_or(proto::ModelKind::Unspecified);
        let data = match (kind, config.params, m.model, m.data) {
            (
                proto::ModelKind::IsolationForest,
                Some(proto::model_config::Params::IsolationForest(p)),
                Some(proto::checkpoint::Model::IsolationForest(f)),
                Some(proto::checkpoint::Data::Reservoir(r)),
            ) => detector_data(p, f, r, nf, config.seed)?,
            (
                proto::ModelKind::RandomForest,
                Some(proto::model_config::Params::RandomForest(p)),
                Some(proto::checkpoint::Model::RandomForest(f)),
                Some(proto::checkpoint::Data::History(h)),
            ) => forecaster_data(p, f, h, nf, config.seed)?,
            (kind, ..) => {
                return Err(invalid(format!(
                    "model kind {kind:?} with missing or mismatched parameters, forest or data"
                )));
            }
        };
        Ok(SavedModel {
            name: m.model_name,
            features: config.features,
            expressions: config.expressions,
            step_ms: config.step_ms,
            retrain_interval_ms: config.retrain_interval_ms,
            max_age_ms: config.max_age_ms,
            training,
            data,
        })
    }
}

fn invalid(reason: impl Into<String>) -> CheckpointError {
    CheckpointError::Invalid(reason.into())
}

fn size(v: u64, what: &str) -> Result<usize, CheckpointError> {
    usize::try_from(v).map_err(|_| invalid(format!("{what} is {v}")))
}

fn flat_trees<'a>(trees: impl Iterator<Item = &'a [Node]>) -> proto::Trees {
    let mut out = proto::Trees::default();
    for nodes in trees {
        out.node_counts.push(nodes.len() as u32);
        for n in nodes {
            out.feature.push(n.feature);
            out.child.push(n.child);
            out.value.push(n.value);
        }
    }
    out
}

/// Splits the concatenated node arrays back into trees, checking that the counts cover them
/// exactly. Node indices are checked by the forests' own `from_parts`.
fn split_trees(t: Option<proto::Trees>) -> Result<Vec<Vec<Node>>, CheckpointError> {
    let t = t.ok_or_else(|| invalid("no trees"))?;
    let total: u64 = t.node_counts.iter().map(|&c| u64::from(c)).sum();
    if [t.feature.len(), t.child.len(), t.value.len()]
        .iter()
        .any(|&len| len as u64 != total)
    {
        return Err(invalid(format!(
            "node counts sum to {total} but the node arrays hold {}, {} and {}",
            t.feature.len(),
            t.child.len(),
            t.value.len()
        )));
    }
    let mut at = 0usize;
    Ok(t.node_counts
        .iter()
        .map(|&c| {
            let range = at..at + c as usize;
            at = range.end;
            range
                .map(|i| Node {
                    feature: t.feature[i],
                    child: t.child[i],
                    value: t.value[i],
                })
                .collect()
        })
        .collect())
}

fn detector_data(
    p: proto::IsolationForestParams,
    f: proto::IsolationForest,
    r: proto::Reservoir,
    nf: usize,
    seed: u64,
) -> Result<SavedData, CheckpointError> {
    use crate::model::iforest::IsolationForestParams;
    if f.n_features != nf as u64 || r.n_features != nf as u64 {
        return Err(invalid(format!(
            "{nf} features configured but the forest has {} and the reservoir {}",
            f.n_features, r.n_features
        )));
    }
    let trees = split_trees(f.trees)?;
    if f.psi.len() != trees.len() || f.tree_generation.len() != trees.len() {
        return Err(invalid(format!(
            "{} trees but {} psi and {} generations",
            trees.len(),
            f.psi.len(),
            f.tree_generation.len()
        )));
    }
    let n_nodes: usize = trees.iter().map(Vec::len).sum();
    if f.sizes.len() != n_nodes {
        return Err(invalid(format!(
            "{} node sizes for {n_nodes} nodes",
            f.sizes.len()
        )));
    }
    let mut sizes = f.sizes.into_iter();
    let parts = trees
        .into_iter()
        .zip(f.psi)
        .zip(f.tree_generation)
        .map(|((nodes, psi), generation)| {
            Ok(IsolationTreeParts {
                sizes: sizes.by_ref().take(nodes.len()).collect(),
                nodes,
                psi: size(psi, "a tree's psi")?,
                generation,
            })
        })
        .collect::<Result<Vec<_>, CheckpointError>>()?;
    let params = IsolationForestParams {
        n_estimators: size(p.n_estimators, "n_estimators")?,
        max_samples: size(p.max_samples, "max_samples")?,
        max_features: p.max_features,
        contamination: if p.contamination_auto {
            Contamination::Auto
        } else {
            Contamination::Fraction(p.contamination)
        },
        seed,
    };
    let forest =
        IsolationForest::from_parts(params, nf, parts, f.offset, f.generation, f.trees_grown)
            .map_err(|e| invalid(format!("isolation forest: {e}")))?;
    let n = r.timestamps_ms.len();
    if r.values.len() != n.saturating_mul(nf) || r.trainable.len() != n {
        return Err(invalid(format!(
            "reservoir of {n} timestamps has {} values and {} trainable flags",
            r.values.len(),
            r.trainable.len()
        )));
    }
    if let Some(v) = r.values.iter().find(|v| !v.is_finite()) {
        return Err(invalid(format!("reservoir value {v}")));
    }
    if !(p.replace_fraction > 0.0 && p.replace_fraction <= 1.0) {
        return Err(invalid(format!("replace_fraction {}", p.replace_fraction)));
    }
    Ok(SavedData::Detector {
        forest: Arc::new(forest),
        replace_fraction: p.replace_fraction,
        reservoir_size: size(p.reservoir_size, "reservoir_size")?,
        gate_anomalies: p.gate_anomalies,
        reservoir: SavedReservoir {
            values: r.values,
            timestamps_ms: r.timestamps_ms,
            trainable: r.trainable,
        },
    })
}

fn forecaster_data(
    p: proto::RandomForestParams,
    f: proto::RandomForest,
    h: proto::EntityHistory,
    nf: usize,
    seed: u64,
) -> Result<SavedData, CheckpointError> {
    let (lookback, horizon) = (size(p.lookback, "lookback")?, size(p.horizon, "horizon")?);
    let n_inputs = lookback.checked_mul(nf);
    let n_outputs = horizon.checked_mul(p.targets.len());
    if n_inputs != Some(size(f.n_features, "n_features")?)
        || n_outputs != Some(size(f.n_outputs, "n_outputs")?)
    {
        return Err(invalid(format!(
            "a forest of {} inputs and {} outputs for lookback {lookback} × {nf} features and \
             horizon {horizon} × {} targets",
            f.n_features,
            f.n_outputs,
            p.targets.len()
        )));
    }
    if h.n_features != nf as u64 {
        return Err(invalid(format!(
            "{nf} features configured but the history has {}",
            h.n_features
        )));
    }
    let nodes = split_trees(f.trees)?;
    let (targets, trees) = if f.leaf_value_counts.is_empty() {
        shared_leaves(
            nodes,
            f.targets,
            f.entry_counts,
            f.entry_rows,
            f.entry_weights,
        )?
    } else if f.targets.is_empty() && f.entry_counts.is_empty() && f.entry_rows.is_empty() {
        leaf_means(nodes, f.leaf_value_counts, f.leaf_values, f.n_outputs)?
    } else {
        return Err(invalid(
            "the random forest has both format 1 leaf values and format 2 leaf entries",
        ));
    };
    let params = RandomForestParams {
        n_estimators: size(p.n_estimators, "n_estimators")?,
        max_depth: match p.max_depth {
            0 => None,
            d => Some(size(d, "max_depth")?),
        },
        min_samples_split: size(p.min_samples_split, "min_samples_split")?,
        min_samples_leaf: size(p.min_samples_leaf, "min_samples_leaf")?,
        max_features: p.max_features,
        bootstrap: p.bootstrap,
        seed,
    };
    params
        .validate()
        .map_err(|e| invalid(format!("random forest: {e}")))?;
    let forest = RandomForestRegressor::from_parts(
        params,
        f.n_features as usize,
        f.n_outputs as usize,
        targets,
        trees,
    )
    .map_err(|e| invalid(format!("random forest: {e}")))?;
    let history = h
        .entities
        .into_iter()
        .enumerate()
        .map(|(i, e)| {
            if e.values.len() != e.timestamps_ms.len().saturating_mul(nf) {
                return Err(invalid(format!(
                    "entity {i}: {} timestamps but {} values",
                    e.timestamps_ms.len(),
                    e.values.len()
                )));
            }
            Ok(SavedEntity {
                labels: Labels::from_pairs(
                    e.labels.iter().map(|l| (l.name.as_str(), l.value.as_str())),
                ),
                timestamps_ms: e.timestamps_ms,
                values: e.values,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SavedData::Forecaster {
        forest: Arc::new(forest),
        targets: p.targets,
        lookback,
        horizon,
        history,
    })
}

/// Format 2's trees: each tree's leaf entries cut from the concatenated entry arrays. Rows,
/// weights and leaf runs are checked by `RandomForestRegressor::from_parts`.
fn shared_leaves(
    nodes: Vec<Vec<Node>>,
    targets: Vec<f64>,
    counts: Vec<u32>,
    rows: Vec<u32>,
    weights: Vec<u32>,
) -> Result<(Vec<f64>, Vec<RegressionTree>), CheckpointError> {
    if counts.len() != nodes.len() {
        return Err(invalid(format!(
            "{} trees but {} leaf entry counts",
            nodes.len(),
            counts.len()
        )));
    }
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total != rows.len() as u64 || total != weights.len() as u64 {
        return Err(invalid(format!(
            "leaf entry counts sum to {total} but {} entry rows and {} weights are stored",
            rows.len(),
            weights.len()
        )));
    }
    let mut entries = rows
        .into_iter()
        .zip(weights)
        .map(|(row, weight)| LeafEntry { row, weight });
    let trees = nodes
        .into_iter()
        .zip(counts)
        .map(|(nodes, count)| RegressionTree {
            tree: FlatTree { nodes },
            entries: entries.by_ref().take(count as usize).collect(),
        })
        .collect();
    Ok((targets, trees))
}

/// Format 1's trees, whose leaves stored their means: the means become the target table and
/// each leaf holds its own row (weight 0), so predictions keep their bits.
fn leaf_means(
    mut nodes: Vec<Vec<Node>>,
    counts: Vec<u32>,
    values: Vec<f64>,
    n_outputs: u64,
) -> Result<(Vec<f64>, Vec<RegressionTree>), CheckpointError> {
    if counts.len() != nodes.len() {
        return Err(invalid(format!(
            "{} trees but {} leaf value counts",
            nodes.len(),
            counts.len()
        )));
    }
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    if total != values.len() as u64 {
        return Err(invalid(format!(
            "leaf value counts sum to {total} but {} leaf values are stored",
            values.len()
        )));
    }
    let k = n_outputs.max(1);
    let mut base = 0u64;
    for (t, (nodes, &count)) in nodes.iter_mut().zip(&counts).enumerate() {
        let count = u64::from(count);
        if count % k != 0 {
            return Err(invalid(format!(
                "tree {t}: {count} leaf values is not a whole number of leaves of {k} outputs"
            )));
        }
        let leaves = count / k;
        for (i, node) in nodes.iter_mut().enumerate().filter(|(_, n)| n.is_leaf()) {
            let leaf = u64::from(node.child);
            if leaf >= leaves {
                return Err(invalid(format!(
                    "tree {t}: leaf node {i} points at leaf {leaf} of {leaves}"
                )));
            }
            // below the total of `values`, whose length is a usize
            let row = u32::try_from(base + leaf)
                .map_err(|_| invalid(format!("tree {t}: leaf row {} past 2^32", base + leaf)))?;
            *node = Node::leaf(row, 0.0);
        }
        base += leaves;
    }
    let trees = nodes
        .into_iter()
        .map(|nodes| RegressionTree {
            tree: FlatTree { nodes },
            entries: Vec::new(),
        })
        .collect();
    Ok((values, trees))
}
