//! Entities and the per-entity feature history that the models consume.
//!
//! An entity is one label set of the feature results, without `__name__` (features that select
//! different metrics for the same node describe the same entity). With aggregated queries (the defaults)
//! every feature has one series with no labels, so there is one entity: the agent's whole input.
//! With `by (instance)`, there is one entity per node. A feature whose result is a single series
//! with no labels (a cluster-wide value, a scalar, `vector(0)`) joins every entity's vector. An
//! entity's vector is complete at a step when every other feature has a finite value for exactly
//! its label set; only complete vectors are scored.
//!
//! [`EntityHistory`] keeps each entity's vectors at a model's own step, bounded in rows (the
//! model's training days) and in entities, so memory is fixed by configuration.

use std::collections::{BTreeMap, VecDeque};

use super::StepResult;
use crate::series::Labels;
use crate::series::labels::METRIC_NAME;

/// The label that marks an entity made of training-source rows (synthetic or backfilled) rather
/// than of received samples; no model exports results for such an entity.
pub(crate) const PRIOR_LABEL: &str = "canopy_source";

/// Whether `entity` is made of training-source rows (see [`PRIOR_LABEL`]).
pub(crate) fn is_prior(entity: &Labels) -> bool {
    entity.get(PRIOR_LABEL).is_some()
}

/// The complete vectors at one step for the features `indices` (in that order), by entity.
pub(crate) fn entity_vectors(step: &StepResult, indices: &[usize]) -> Vec<(Labels, Vec<f64>)> {
    let mut broadcast: Vec<Option<f64>> = vec![None; indices.len()];
    let mut per_entity: Vec<Option<Vec<(Labels, f64)>>> = vec![None; indices.len()];
    for (k, &i) in indices.iter().enumerate() {
        let Some(Some(values)) = step.values.get(i) else {
            return Vec::new(); // a feature failed or is unknown: no vector is complete
        };
        let mut vs: Vec<(Labels, f64)> = values
            .iter()
            .map(|(l, v)| (l.filter(|n| n != METRIC_NAME), *v))
            .collect();
        vs.sort_by(|a, b| a.0.cmp(&b.0));
        match vs.as_slice() {
            [(labels, v)] if labels.is_empty() => broadcast[k] = Some(*v),
            _ => per_entity[k] = Some(vs),
        }
    }
    // The entities are the label sets of the first labelled feature; each other feature must
    // have a value for the same set.
    let Some(first) = per_entity.iter().flatten().next() else {
        let v: Vec<f64> = broadcast.iter().map(|b| b.unwrap_or(f64::NAN)).collect();
        return if v.iter().all(|x| x.is_finite()) {
            vec![(Labels::default(), v)]
        } else {
            Vec::new()
        };
    };
    let mut out = Vec::with_capacity(first.len());
    'entity: for (labels, _) in first.iter() {
        let mut v = Vec::with_capacity(indices.len());
        for k in 0..indices.len() {
            let x = match (broadcast[k], &per_entity[k]) {
                (Some(b), _) => b,
                (None, Some(vs)) => match vs.binary_search_by(|(l, _)| l.cmp(labels)) {
                    Ok(pos) => vs[pos].1,
                    Err(_) => continue 'entity,
                },
                (None, None) => continue 'entity,
            };
            if !x.is_finite() {
                continue 'entity;
            }
            v.push(x);
        }
        out.push((labels.clone(), v));
    }
    out
}

/// One entity's rows, oldest first: a timestamp and `n_features` values per row.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub t: VecDeque<i64>,
    pub v: VecDeque<f64>,
}

impl Rows {
    pub(crate) fn len(&self) -> usize {
        self.t.len()
    }
}

/// Each entity's feature vectors at a model's step, bounded in rows and entities.
#[derive(Debug, Clone)]
pub struct EntityHistory {
    n_features: usize,
    max_rows: usize,
    max_entities: usize,
    entities: BTreeMap<Labels, Rows>,
}

impl EntityHistory {
    pub(crate) fn new(n_features: usize, max_rows: usize, max_entities: usize) -> EntityHistory {
        EntityHistory {
            n_features,
            max_rows: max_rows.max(1),
            max_entities,
            entities: BTreeMap::new(),
        }
    }

    pub(crate) fn n_features(&self) -> usize {
        self.n_features
    }

    /// Appends one step: complete entities get their vector, known entities that are incomplete
    /// get a row of NaN (so that windows over the history see the gap), and new entities beyond
    /// `max_entities` are refused and counted. Returns how many entities were refused.
    pub(crate) fn push(&mut self, t_ms: i64, vectors: &[(Labels, Vec<f64>)]) -> usize {
        let mut refused = 0;
        for (labels, v) in vectors {
            if !self.entities.contains_key(labels) && self.entities.len() >= self.max_entities {
                refused += 1;
                continue;
            }
            let rows = self.entities.entry(labels.clone()).or_default();
            Self::push_row(rows, self.max_rows, t_ms, v);
        }
        let gap = vec![f64::NAN; self.n_features];
        for (labels, rows) in self.entities.iter_mut() {
            if rows.t.back() != Some(&t_ms) && !vectors.iter().any(|(l, _)| l == labels) {
                Self::push_row(rows, self.max_rows, t_ms, &gap);
            }
        }
        // An entity whose retained rows are all gaps has gone away.
        let n = self.n_features;
        self.entities
            .retain(|_, rows| rows.v.iter().any(|x| !x.is_nan()) || rows.len() * n == 0);
        refused
    }

    fn push_row(rows: &mut Rows, max_rows: usize, t_ms: i64, v: &[f64]) {
        if rows.t.back().is_some_and(|&last| last >= t_ms) {
            return; // each step once, in order
        }
        rows.t.push_back(t_ms);
        rows.v.extend(v.iter().copied());
        while rows.t.len() > max_rows {
            rows.t.pop_front();
            rows.v.drain(..v.len());
        }
    }

    pub fn entities(&self) -> impl Iterator<Item = (&Labels, &Rows)> + '_ {
        self.entities.iter()
    }

    #[cfg(test)]
    fn get(&self, entity: &Labels) -> Option<&Rows> {
        self.entities.get(entity)
    }

    /// Restores an entity's rows (from a checkpoint or a backfill), keeping the newest `max_rows`.
    pub(crate) fn insert_rows(&mut self, entity: Labels, t: &[i64], v: &[f64]) {
        let rows = self.entities.entry(entity).or_default();
        for (k, &tk) in t.iter().enumerate() {
            Self::push_row(
                rows,
                self.max_rows,
                tk,
                &v[k * self.n_features..(k + 1) * self.n_features],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(node: &str) -> Labels {
        Labels::from_pairs([("node", node)])
    }

    fn step(values: Vec<Option<Vec<(Labels, f64)>>>) -> StepResult {
        StepResult { t_ms: 0, values }
    }

    #[test]
    fn aggregated_features_make_one_entity() {
        let up = Labels::from_pairs([("__name__", "up")]);
        let s = step(vec![
            Some(vec![(Labels::default(), 0.5)]),
            Some(vec![(up, 2.0)]),
        ]);
        assert_eq!(
            entity_vectors(&s, &[1, 0]),
            [(Labels::default(), vec![2.0, 0.5])]
        );
    }

    #[test]
    fn per_node_features_join_on_labels_and_broadcast_cluster_values() {
        let s = step(vec![
            Some(vec![(l("a"), 1.0), (l("b"), 2.0), (l("c"), 3.0)]),
            Some(vec![(l("a"), 10.0), (l("c"), f64::NAN)]),
            Some(vec![(Labels::default(), 0.0)]),
        ]);
        // b lacks feature 1, c's is NaN: only a is complete
        assert_eq!(
            entity_vectors(&s, &[0, 1, 2]),
            [(l("a"), vec![1.0, 10.0, 0.0])]
        );
        let failed = step(vec![Some(vec![(l("a"), 1.0)]), None]);
        assert!(entity_vectors(&failed, &[0, 1]).is_empty());
    }

    #[test]
    fn history_is_bounded_and_marks_gaps() {
        let mut h = EntityHistory::new(2, 3, 1);
        assert_eq!(
            h.push(1, &[(l("a"), vec![1.0, 2.0]), (l("b"), vec![0.0, 0.0])]),
            1,
            "entity limit"
        );
        h.push(2, &[]);
        h.push(3, &[(l("a"), vec![3.0, 4.0])]);
        h.push(4, &[(l("a"), vec![5.0, 6.0])]);
        let rows = h.get(&l("a")).expect("entity a");
        assert_eq!(rows.t, [2, 3, 4]);
        assert!(rows.v[0].is_nan() && rows.v[1].is_nan(), "step 2 was a gap");
        assert_eq!(
            rows.v.iter().skip(2).copied().collect::<Vec<_>>(),
            [3.0, 4.0, 5.0, 6.0]
        );
        assert!(h.get(&l("b")).is_none());
        h.push(5, &[]);
        h.push(6, &[]);
        h.push(7, &[]);
        assert!(
            h.get(&l("a")).is_none(),
            "an entity whose rows are all gaps has gone away"
        );
    }
}
