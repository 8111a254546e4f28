//! Evaluating plans at a step timestamp over the series store.
//!
//! Owns the per-step semantics of Prometheus 2.42 that are not arithmetic: which samples an
//! instant or range selector sees, the order series are visited in (label order), when
//! `__name__` is dropped, vector matching for arithmetic and `or`, and the errors a step can
//! raise. The float algorithms live in [`super::kernels`]. Reads the store through
//! [`SeriesStore::select`] only; never writes to it, and knows nothing of ingest, HTTP or models.
//!
//! Series labels flow through the evaluation as a shared `Arc<Labels>` plus a "name dropped"
//! flag, so `sum(rate(x[5m]))` over 10,000 series allocates no label set: new label sets are
//! built only where PromQL really changes them (grouping, `on`/`ignoring`, the final result).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::series::labels::METRIC_NAME;
use crate::series::store::is_stale_marker;
use crate::series::{Labels, Sample, Selection, SeriesStore};

use super::kernels::{self, Accumulator, Window};
use super::plan::{
    AggOp, ArithOp, LOOKBACK_DELTA_MS, LabelSet, Node, Plan, RangeFunc, SelectorUse,
};

/// The result of one plan at one step.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Scalar(f64),
    /// An instant vector sorted by labels, each label set once.
    Vector(Vec<(Labels, f64)>),
}

/// A step that Prometheus would answer with an error (the whole query fails at that step).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("evaluating {expr:?} at {t_ms} ms: {kind}")]
pub struct EvalError {
    pub expr: String,
    pub t_ms: i64,
    pub kind: EvalErrorKind,
}

#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EvalErrorKind {
    #[error(
        "found duplicate series for the match group {group} on the right hand-side of the operation: [{first}, {second}];many-to-many matching not allowed: matching labels must be unique on one side"
    )]
    ManyToMany {
        group: String,
        first: String,
        second: String,
    },
    #[error(
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    )]
    ManyToOne,
    #[error("vector cannot contain metrics with the same labelset")]
    DuplicateLabelset,
}

/// A series' labels during evaluation: the stored set, possibly without `__name__`.
#[derive(Clone, Debug)]
struct SeriesLabels {
    base: Arc<Labels>,
    drop_name: bool,
}

impl SeriesLabels {
    fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let drop = self.drop_name;
        self.base
            .iter()
            .filter(move |(n, _)| !(drop && *n == METRIC_NAME))
    }

    fn name(&self) -> Option<&str> {
        if self.drop_name {
            None
        } else {
            self.base.get(METRIC_NAME)
        }
    }

    fn cmp(&self, other: &SeriesLabels) -> Ordering {
        if !self.drop_name && !other.drop_name {
            self.base.cmp(&other.base)
        } else {
            self.iter().cmp(other.iter())
        }
    }

    fn to_labels(&self) -> Labels {
        if self.drop_name && self.base.get(METRIC_NAME).is_some() {
            self.base.filter(|n| n != METRIC_NAME)
        } else {
            Labels::clone(&self.base)
        }
    }
}

#[derive(Debug)]
struct Elem {
    labels: SeriesLabels,
    v: f64,
}

/// An instant vector mid-evaluation. `sorted` records whether `elems` is known to be in label
/// order, so that order is restored (by sorting) only where it matters: before an aggregation
/// and for the result. Label sets are always unique.
#[derive(Debug)]
struct Vector {
    elems: Vec<Elem>,
    sorted: bool,
}

impl Vector {
    fn sort(&mut self) -> Result<(), EvalErrorKind> {
        if !self.sorted {
            self.elems.sort_by(|a, b| a.labels.cmp(&b.labels));
            self.sorted = true;
            if self
                .elems
                .windows(2)
                .any(|w| w[0].labels.cmp(&w[1].labels) == Ordering::Equal)
            {
                return Err(EvalErrorKind::DuplicateLabelset);
            }
        }
        Ok(())
    }

    /// Drops `__name__` from every series, as arithmetic, unary minus and most functions do.
    /// Two series that differed only by name now collide: Prometheus fails the step then.
    fn drop_names(&mut self) -> Result<(), EvalErrorKind> {
        let first = self.elems.first().and_then(|e| e.labels.name());
        let same_name = self.elems.iter().all(|e| e.labels.name() == first);
        for e in &mut self.elems {
            e.labels.drop_name = true;
        }
        if !same_name {
            // Removing a label whose value differed can reorder and collide.
            self.sorted = false;
            self.sort()?;
        }
        Ok(())
    }
}

enum Val {
    Scalar(f64),
    Vector(Vector),
}

/// The order of one selector's series, kept across steps: the store returns series in shard
/// order, and sorting 10,000 label sets every step would cost more than the evaluation itself.
/// The cached permutation is reused while the store returns the very same series (by pointer).
#[derive(Default)]
struct SortedOrder {
    series: Vec<Arc<Labels>>,
    perm: Vec<u32>,
}

/// Evaluates plans; holds the buffers and caches reused from step to step. One per thread.
#[derive(Default)]
pub struct Evaluator {
    selection: Selection,
    orders: HashMap<String, SortedOrder>,
    /// Range samples without staleness markers, when a series has any.
    fresh: Vec<Sample>,
    /// Signature scratch for grouping and matching.
    key: Vec<u8>,
}

impl Evaluator {
    pub fn new() -> Evaluator {
        Evaluator::default()
    }

    /// Evaluates `plan` at step timestamp `t_ms`.
    pub fn eval(
        &mut self,
        store: &SeriesStore,
        plan: &Plan,
        t_ms: i64,
    ) -> Result<Value, EvalError> {
        let err = |kind| EvalError {
            expr: plan.expr().to_owned(),
            t_ms,
            kind,
        };
        match self.node(store, plan, plan.root(), t_ms).map_err(err)? {
            Val::Scalar(v) => Ok(Value::Scalar(v)),
            Val::Vector(mut v) => {
                v.sort().map_err(err)?;
                Ok(Value::Vector(
                    v.elems
                        .iter()
                        .map(|e| (e.labels.to_labels(), e.v))
                        .collect(),
                ))
            }
        }
    }

    /// Evaluates every plan at the same `t_ms`, sharing this evaluator's buffers and caches.
    pub fn eval_all<'p>(
        &mut self,
        store: &SeriesStore,
        plans: impl IntoIterator<Item = &'p Plan>,
        t_ms: i64,
    ) -> Vec<Result<Value, EvalError>> {
        plans
            .into_iter()
            .map(|p| self.eval(store, p, t_ms))
            .collect()
    }

    fn node(
        &mut self,
        store: &SeriesStore,
        plan: &Plan,
        node: &Node,
        t: i64,
    ) -> Result<Val, EvalErrorKind> {
        Ok(match node {
            Node::Number(v) => Val::Scalar(*v),
            Node::Instant(i) => Val::Vector(self.instant(store, &plan.selector_uses()[*i], t)),
            Node::Range { func, selector } => {
                let mut v = self.range(store, &plan.selector_uses()[*selector], *func, t);
                // last_over_time acts like an offset: the series keeps its name.
                if *func != RangeFunc::LastOverTime {
                    v.drop_names()?;
                }
                Val::Vector(v)
            }
            Node::Aggregate { op, grouping, arg } => {
                let v = self.vector(store, plan, arg, t)?;
                Val::Vector(self.aggregate(*op, grouping, v)?)
            }
            Node::Arith {
                op,
                lhs,
                rhs,
                matching,
            } => {
                let l = self.node(store, plan, lhs, t)?;
                let r = self.node(store, plan, rhs, t)?;
                match (l, r) {
                    (Val::Scalar(a), Val::Scalar(b)) => Val::Scalar(op.apply(a, b)),
                    (Val::Vector(mut v), Val::Scalar(b)) => {
                        v.elems.iter_mut().for_each(|e| e.v = op.apply(e.v, b));
                        v.drop_names()?;
                        Val::Vector(v)
                    }
                    (Val::Scalar(a), Val::Vector(mut v)) => {
                        v.elems.iter_mut().for_each(|e| e.v = op.apply(a, e.v));
                        v.drop_names()?;
                        Val::Vector(v)
                    }
                    (Val::Vector(a), Val::Vector(b)) => {
                        Val::Vector(self.vector_binop(*op, a, b, matching)?)
                    }
                }
            }
            Node::Or { lhs, rhs, matching } => {
                let a = self.vector(store, plan, lhs, t)?;
                let b = self.vector(store, plan, rhs, t)?;
                Val::Vector(self.or(a, b, matching))
            }
            Node::Neg(x) => match self.node(store, plan, x, t)? {
                Val::Scalar(v) => Val::Scalar(-v),
                Val::Vector(mut v) => {
                    v.elems.iter_mut().for_each(|e| e.v = -e.v);
                    v.drop_names()?;
                    Val::Vector(v)
                }
            },
            Node::Vector(s) => {
                let v = self.scalar(store, plan, s, t)?;
                Val::Vector(Vector {
                    elems: vec![Elem {
                        labels: SeriesLabels {
                            base: Arc::new(Labels::default()),
                            drop_name: false,
                        },
                        v,
                    }],
                    sorted: true,
                })
            }
            Node::Scalar(x) => {
                let v = self.vector(store, plan, x, t)?;
                Val::Scalar(match v.elems.as_slice() {
                    [only] => only.v,
                    _ => f64::NAN,
                })
            }
            Node::Abs(x) => self.map(store, plan, x, t, f64::abs)?,
            Node::ClampMin(x, min) => {
                let min = self.scalar(store, plan, min, t)?;
                self.map(store, plan, x, t, |v| kernels::go_max(min, v))?
            }
            Node::ClampMax(x, max) => {
                let max = self.scalar(store, plan, max, t)?;
                self.map(store, plan, x, t, |v| kernels::go_min(max, v))?
            }
        })
    }

    fn vector(
        &mut self,
        store: &SeriesStore,
        plan: &Plan,
        node: &Node,
        t: i64,
    ) -> Result<Vector, EvalErrorKind> {
        match self.node(store, plan, node, t)? {
            Val::Vector(v) => Ok(v),
            // The planner only builds vector arguments here.
            Val::Scalar(_) => Ok(Vector {
                elems: Vec::new(),
                sorted: true,
            }),
        }
    }

    fn scalar(
        &mut self,
        store: &SeriesStore,
        plan: &Plan,
        node: &Node,
        t: i64,
    ) -> Result<f64, EvalErrorKind> {
        match self.node(store, plan, node, t)? {
            Val::Scalar(v) => Ok(v),
            // The planner only builds scalar arguments here.
            Val::Vector(_) => Ok(f64::NAN),
        }
    }

    /// A math function over a vector: `abs`, `clamp_min`, `clamp_max` (drop `__name__`).
    fn map(
        &mut self,
        store: &SeriesStore,
        plan: &Plan,
        node: &Node,
        t: i64,
        f: impl Fn(f64) -> f64,
    ) -> Result<Val, EvalErrorKind> {
        let mut v = self.vector(store, plan, node, t)?;
        v.elems.iter_mut().for_each(|e| e.v = f(e.v));
        v.drop_names()?;
        Ok(Val::Vector(v))
    }

    /// Selects `[from, to]` into `self.selection` and makes sure `self.orders[key]` holds the
    /// label order of exactly the selected series.
    fn select(&mut self, store: &SeriesStore, u: &SelectorUse, from: i64, to: i64) {
        store.select(&u.selector, from, to, &mut self.selection);
        let sel = &self.selection;
        let same = self.orders.get(&u.key).is_some_and(|o| {
            o.series.len() == sel.len()
                && o.series
                    .iter()
                    .zip(sel.iter())
                    .all(|(a, (b, _))| Arc::ptr_eq(a, b))
        });
        if !same {
            let series: Vec<Arc<Labels>> = sel.iter().map(|(l, _)| l.clone()).collect();
            let mut perm: Vec<u32> = (0..series.len() as u32).collect();
            perm.sort_unstable_by(|&a, &b| series[a as usize].cmp(&series[b as usize]));
            self.orders
                .insert(u.key.clone(), SortedOrder { series, perm });
        }
    }

    fn order(&self, u: &SelectorUse) -> &[u32] {
        self.orders.get(&u.key).map_or(&[], |o| o.perm.as_slice())
    }

    /// An instant selector: each series' newest sample in [T−o−5m, T−o], unless it is a
    /// staleness marker (`vectorSelectorSingle`).
    fn instant(&mut self, store: &SeriesStore, u: &SelectorUse, t: i64) -> Vector {
        let end = t - u.offset_ms;
        self.select(store, u, end - LOOKBACK_DELTA_MS, end);
        let mut elems = Vec::with_capacity(self.selection.len());
        for &i in self.order(u) {
            let Some((labels, samples)) = self.selection.get(i as usize) else {
                continue;
            };
            if let Some(last) = samples.last()
                && !is_stale_marker(last.v)
            {
                elems.push(Elem {
                    labels: SeriesLabels {
                        base: labels.clone(),
                        drop_name: false,
                    },
                    v: last.v,
                });
            }
        }
        Vector {
            elems,
            sorted: true,
        }
    }

    /// A range function over a range selector: samples in [T−o−r, T−o], both ends included
    /// (Prometheus 2.x), staleness markers left out.
    fn range(&mut self, store: &SeriesStore, u: &SelectorUse, func: RangeFunc, t: i64) -> Vector {
        let end = t - u.offset_ms;
        let window = Window {
            start: end - u.range_ms.unwrap_or(0),
            end,
        };
        self.select(store, u, window.start, window.end);
        let mut elems = Vec::with_capacity(self.selection.len());
        let perm = self
            .orders
            .get(&u.key)
            .map_or(&[][..], |o| o.perm.as_slice());
        for &i in perm {
            let Some((labels, samples)) = self.selection.get(i as usize) else {
                continue;
            };
            let samples = if samples.iter().any(|s| is_stale_marker(s.v)) {
                self.fresh.clear();
                self.fresh
                    .extend(samples.iter().filter(|s| !is_stale_marker(s.v)));
                &self.fresh[..]
            } else {
                samples
            };
            if let Some(v) = kernels::range_func(func, samples, window) {
                elems.push(Elem {
                    labels: SeriesLabels {
                        base: labels.clone(),
                        drop_name: false,
                    },
                    v,
                });
            }
        }
        Vector {
            elems,
            sorted: true,
        }
    }

    /// `aggregation`: series visited in label order, one accumulator per group.
    fn aggregate(
        &mut self,
        op: AggOp,
        grouping: &LabelSet,
        mut v: Vector,
    ) -> Result<Vector, EvalErrorKind> {
        v.sort()?;
        let empty_by = matches!(grouping, LabelSet::Only(l) if l.is_empty());
        let mut groups: Vec<(Labels, Accumulator)> = Vec::new();
        if empty_by {
            // No grouping: one group with no labels, no signatures to build.
            if let Some((first, rest)) = v.elems.split_first() {
                let mut acc = Accumulator::new(op, first.v);
                rest.iter().for_each(|e| acc.add(op, e.v));
                groups.push((Labels::default(), acc));
            }
        } else {
            let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
            for e in &v.elems {
                let pairs = || {
                    e.labels.iter().filter(|(n, _)| match grouping {
                        LabelSet::Only(keep) => keep.iter().any(|k| k == n),
                        LabelSet::AllBut(drop) => *n != METRIC_NAME && !drop.iter().any(|d| d == n),
                    })
                };
                signature(pairs(), &mut self.key);
                match index.get(self.key.as_slice()) {
                    Some(&g) => groups[g].1.add(op, e.v),
                    None => {
                        let labels: Vec<(&str, &str)> = pairs().collect();
                        index.insert(self.key.clone(), groups.len());
                        groups.push((Labels::from_sorted(&labels), Accumulator::new(op, e.v)));
                    }
                }
            }
        }
        let sorted = groups.len() <= 1;
        Ok(Vector {
            elems: groups
                .into_iter()
                .map(|(labels, acc)| Elem {
                    labels: SeriesLabels {
                        base: Arc::new(labels),
                        drop_name: false,
                    },
                    v: acc.finish(op),
                })
                .collect(),
            sorted,
        })
    }

    /// `VectorBinop`, one-to-one: rhs signatures must be unique, each lhs series takes the rhs
    /// series with its signature, unmatched series vanish, the result has lhs's labels without
    /// `__name__` (and without the `ignoring` labels, or only the `on` labels).
    fn vector_binop(
        &mut self,
        op: ArithOp,
        lhs: Vector,
        rhs: Vector,
        matching: &LabelSet,
    ) -> Result<Vector, EvalErrorKind> {
        if lhs.elems.is_empty() || rhs.elems.is_empty() {
            return Ok(Vector {
                elems: Vec::new(),
                sorted: true,
            });
        }
        let mut right: HashMap<Vec<u8>, usize> = HashMap::with_capacity(rhs.elems.len());
        for (i, e) in rhs.elems.iter().enumerate() {
            signature(match_pairs(&e.labels, matching), &mut self.key);
            if let Some(&j) = right.get(self.key.as_slice()) {
                let group: Vec<(&str, &str)> = match_pairs(&e.labels, matching).collect();
                return Err(EvalErrorKind::ManyToMany {
                    group: Labels::from_sorted(&group).to_string(),
                    first: e.labels.to_labels().to_string(),
                    second: rhs.elems[j].labels.to_labels().to_string(),
                });
            }
            right.insert(self.key.clone(), i);
        }
        let mut taken = vec![false; rhs.elems.len()];
        let keeps_lhs_labels = *matching == LabelSet::AllBut(Vec::new());
        let first_name = lhs
            .elems
            .first()
            .and_then(|e| e.labels.name())
            .map(str::to_owned);
        let mut same_name = true;
        let mut elems = Vec::with_capacity(lhs.elems.len().min(rhs.elems.len()));
        for e in lhs.elems {
            signature(match_pairs(&e.labels, matching), &mut self.key);
            let Some(&j) = right.get(self.key.as_slice()) else {
                continue;
            };
            if std::mem::replace(&mut taken[j], true) {
                return Err(EvalErrorKind::ManyToOne);
            }
            let v = op.apply(e.v, rhs.elems[j].v);
            same_name &= e.labels.name() == first_name.as_deref();
            let labels = if keeps_lhs_labels {
                SeriesLabels {
                    base: e.labels.base,
                    drop_name: true,
                }
            } else {
                let kept: Vec<(&str, &str)> = e
                    .labels
                    .iter()
                    .filter(|(n, _)| *n != METRIC_NAME && keep_for_result(n, matching))
                    .collect();
                SeriesLabels {
                    base: Arc::new(Labels::from_sorted(&kept)),
                    drop_name: false,
                }
            };
            elems.push(Elem { labels, v });
        }
        Ok(Vector {
            elems,
            // lhs order minus a name all series shared is still label order
            sorted: lhs.sorted && keeps_lhs_labels && same_name,
        })
    }

    /// `VectorOr`: all of lhs, then each rhs series whose signature no lhs series has.
    fn or(&mut self, lhs: Vector, rhs: Vector, matching: &LabelSet) -> Vector {
        if rhs.elems.is_empty() {
            return lhs;
        }
        let mut left: HashSet<Vec<u8>> = HashSet::with_capacity(lhs.elems.len());
        for e in &lhs.elems {
            signature(match_pairs(&e.labels, matching), &mut self.key);
            left.insert(self.key.clone());
        }
        let sorted = lhs.elems.is_empty() && rhs.sorted;
        let mut elems = lhs.elems;
        for e in rhs.elems {
            signature(match_pairs(&e.labels, matching), &mut self.key);
            if !left.contains(self.key.as_slice()) {
                elems.push(e);
            }
        }
        Vector { elems, sorted }
    }
}

/// The labels two series are matched on (`signatureFunc`): the `on` labels, or all but the
/// `ignoring` ones and `__name__`.
fn match_pairs<'a>(
    labels: &'a SeriesLabels,
    matching: &'a LabelSet,
) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
    labels.iter().filter(move |(n, _)| match matching {
        LabelSet::Only(on) => on.iter().any(|k| k == n),
        LabelSet::AllBut(ignoring) => *n != METRIC_NAME && !ignoring.iter().any(|k| k == n),
    })
}

/// Which lhs labels a one-to-one result keeps (`resultMetric`).
fn keep_for_result(name: &str, matching: &LabelSet) -> bool {
    match matching {
        LabelSet::Only(on) => on.iter().any(|k| k == name),
        LabelSet::AllBut(ignoring) => !ignoring.iter().any(|k| k == name),
    }
}

/// Writes label pairs as `name 0xff value 0xff ...`: 0xff never occurs in UTF-8, so distinct
/// label sets never share a signature.
fn signature<'a>(pairs: impl Iterator<Item = (&'a str, &'a str)>, out: &mut Vec<u8>) {
    out.clear();
    for (n, v) in pairs {
        out.extend_from_slice(n.as_bytes());
        out.push(0xff);
        out.extend_from_slice(v.as_bytes());
        out.push(0xff);
    }
}
