//! Evaluating plans at a step timestamp over the series store.
//!
//! Owns the per-step semantics of Prometheus 2.42 that are not arithmetic: which samples an
//! instant or range selector sees, how a subquery steps, the order series are visited in (label
//! order), when `__name__` is dropped, vector matching (one-to-one, `group_left`/`group_right`,
//! the set operators), label functions, and the errors a step can raise. The float algorithms
//! live in [`super::kernels`]. Reads the store through [`SeriesStore::visit`] only, one series'
//! window at a time, keeping each selector's matched series ([`Postings`]) and their label order
//! across steps; never writes to the store, and knows nothing of ingest, HTTP or models.
//!
//! Series labels flow through the evaluation as a shared `Arc<Labels>` plus a "name dropped"
//! flag, so `sum(rate(x[5m]))` over 10,000 series allocates no label set: new label sets are
//! built only where PromQL really changes them (grouping, `on`/`ignoring`, label functions, the
//! final result).

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::series::labels::METRIC_NAME;
use crate::series::store::is_stale_marker;
use crate::series::{Labels, Postings, Sample, SeriesStore};

use super::golang;
use super::kernels::{self, Accumulator, Bucket, Window};
use super::plan::{
    AggOp, BinOp, Card, LOOKBACK_DELTA_MS, LabelSet, Matching, Node, Plan, RangeFunc, RangeSource,
    SelectorUse, Subquery,
};

/// The result of one plan at one step.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanValue {
    Scalar(f64),
    /// An instant vector sorted by labels, each label set once.
    Vector(Vec<(Labels, f64)>),
}

/// A step that Prometheus would answer with an error (the whole query fails at that step).
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("evaluating {expr:?} at {t_ms} ms: {kind}")]
pub struct EvalError {
    pub(crate) expr: String,
    pub(crate) t_ms: i64,
    pub(crate) kind: EvalErrorKind,
}

/// Prometheus 2.42's own messages for the errors a step can raise.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum EvalErrorKind {
    #[error(
        "found duplicate series for the match group {group} on the {side} hand-side of the operation: [{first}, {second}];many-to-many matching not allowed: matching labels must be unique on one side"
    )]
    ManyToMany {
        group: String,
        side: &'static str,
        first: String,
        second: String,
    },
    #[error(
        "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
    )]
    ManyToOne,
    #[error("multiple matches for labels: grouping labels must ensure unique matches")]
    GroupingNotUnique,
    #[error("vector cannot contain metrics with the same labelset")]
    DuplicateLabelset,
    #[error("Scalar value {0} overflows int64")]
    Int64Overflow(String),
    /// `got` as Go's `%f` prints it.
    #[error("invalid {which} factor. Expected: 0 < {short} < 1, got: {got}")]
    HoltWintersFactor {
        which: &'static str,
        short: &'static str,
        got: String,
    },
}

/// A series' labels during evaluation: the stored set, possibly without `__name__`.
///
/// A selected series names its label set by index into the selector's shared list, so an
/// element costs one increment of that list's count, on a cache line every element shares,
/// where an `Arc` per label set touched 10,000 scattered counts a step (and again to drop
/// them); the label set itself is read only where PromQL reads labels.
#[derive(Clone, Debug)]
struct SeriesLabels {
    set: Arc<[Arc<Labels>]>,
    index: u32,
    drop_name: bool,
}

impl SeriesLabels {
    fn new(labels: Labels) -> SeriesLabels {
        SeriesLabels {
            set: Arc::new([Arc::new(labels)]),
            index: 0,
            drop_name: false,
        }
    }

    fn base(&self) -> &Labels {
        &self.set[self.index as usize]
    }

    fn iter(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        let drop = self.drop_name;
        self.base()
            .iter()
            .filter(move |(n, _)| !(drop && *n == METRIC_NAME))
    }

    fn get(&self, name: &str) -> Option<&str> {
        if self.drop_name && name == METRIC_NAME {
            None
        } else {
            self.base().get(name)
        }
    }

    fn name(&self) -> Option<&str> {
        self.get(METRIC_NAME)
    }

    fn cmp(&self, other: &SeriesLabels) -> Ordering {
        if !self.drop_name && !other.drop_name {
            self.base().cmp(other.base())
        } else {
            self.iter().cmp(other.iter())
        }
    }

    fn to_labels(&self) -> Labels {
        if self.drop_name && self.base().get(METRIC_NAME).is_some() {
            self.base().filter(|n| n != METRIC_NAME)
        } else {
            self.base().clone()
        }
    }
}

/// One series of an instant vector mid-evaluation: its labels and its value at the step.
#[derive(Debug, Clone)]
struct SeriesValue {
    labels: SeriesLabels,
    v: f64,
}

/// An instant vector mid-evaluation. `sorted` records whether `elems` is known to be in label
/// order, so that order is restored (by sorting) only where it matters: before an aggregation
/// and for the result. Sorting also finds the duplicate label sets Prometheus fails a step on.
#[derive(Debug, Clone)]
struct InstantVector {
    elems: Vec<SeriesValue>,
    sorted: bool,
}

impl InstantVector {
    fn empty() -> InstantVector {
        InstantVector {
            elems: Vec::new(),
            sorted: true,
        }
    }

    fn one(labels: Labels, v: f64) -> InstantVector {
        InstantVector {
            elems: vec![SeriesValue {
                labels: SeriesLabels::new(labels),
                v,
            }],
            sorted: true,
        }
    }

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

/// What a node yields mid-evaluation: a scalar, or an instant vector (a range vector is never a
/// node's value; functions read ranges straight off the store).
enum Operand {
    Scalar(f64),
    Vector(InstantVector),
}

/// The order of one selector's series, kept across steps: the store visits series in shard
/// order, and sorting 10,000 label sets every step would cost more than the evaluation itself.
/// Recomputed only when the store reports that the selector's series changed.
struct SortedOrder {
    /// The series the permutation orders, as the store numbered them; shared by the elements
    /// of every vector this selector yields.
    series: Arc<[Arc<Labels>]>,
    perm: Vec<u32>,
}

impl Default for SortedOrder {
    fn default() -> SortedOrder {
        SortedOrder {
            series: Arc::new([]),
            perm: Vec::new(),
        }
    }
}

/// What the evaluator keeps of one selector across steps: the series it matches, and their
/// label order.
#[derive(Default)]
struct SelectorState {
    postings: Postings,
    order: SortedOrder,
}

/// Evaluates plans; holds the buffers and caches reused from step to step. One per thread.
/// The selector cache has one entry per distinct selector (and range) evaluated, so it stays as
/// small as the configured features.
#[derive(Default)]
pub struct Evaluator {
    selectors: HashMap<String, SelectorState>,
    /// One series' samples as the store decodes them.
    scratch: Vec<Sample>,
    /// Each visited series' value (or none), in the store's numbering.
    values: Vec<Option<f64>>,
    /// Range samples without staleness markers, when a series has any.
    fresh: Vec<Sample>,
    /// Signature scratch for grouping and matching.
    key: Vec<u8>,
    /// The answers of reads pinned with `@`, once a step has reached their time (see
    /// [`Evaluator::pinned`]).
    pinned: HashMap<String, InstantVector>,
}

/// At most this many pinned answers are kept; beyond it (a range function whose parameter
/// changes every step) pinned reads are answered from the store as other reads are.
const MAX_PINNED: usize = 1024;

/// `go heap` over `h` with `less`, as `container/heap` sifts: topk and bottomk pick their
/// series (ties included) exactly as Prometheus's heaps do.
fn heap_up<T>(h: &mut [T], mut j: usize, less: &impl Fn(&T, &T) -> bool) {
    while j > 0 {
        let i = (j - 1) / 2;
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        j = i;
    }
}

fn heap_down<T>(h: &mut [T], mut i: usize, n: usize, less: &impl Fn(&T, &T) -> bool) {
    loop {
        let j1 = 2 * i + 1;
        if j1 >= n {
            break;
        }
        let mut j = j1;
        if j1 + 1 < n && less(&h[j1 + 1], &h[j1]) {
            j = j1 + 1;
        }
        if !less(&h[j], &h[i]) {
            break;
        }
        h.swap(i, j);
        i = j;
    }
}

fn heap_push<T>(h: &mut Vec<T>, x: T, less: &impl Fn(&T, &T) -> bool) {
    h.push(x);
    let last = h.len() - 1;
    heap_up(h, last, less);
}

fn heap_pop<T>(h: &mut Vec<T>, less: &impl Fn(&T, &T) -> bool) {
    let n = h.len() - 1;
    h.swap(0, n);
    heap_down(h, 0, n, less);
    h.pop();
}

/// Names a pinned selector read: what is read (`kind`), the selector and its window.
fn pin_key(kind: &str, u: &SelectorUse) -> String {
    format!(
        "{kind}|{}|{:?}|{}|{:?}",
        u.key, u.at_ms, u.offset_ms, u.range_ms
    )
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
    ) -> Result<PlanValue, EvalError> {
        let err = |kind| EvalError {
            expr: plan.expr().to_owned(),
            t_ms,
            kind,
        };
        match self.node(store, plan, plan.root(), t_ms).map_err(err)? {
            Operand::Scalar(v) => Ok(PlanValue::Scalar(v)),
            Operand::Vector(mut v) => {
                v.sort().map_err(err)?;
                Ok(PlanValue::Vector(
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
    ) -> Vec<Result<PlanValue, EvalError>> {
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
    ) -> Result<Operand, EvalErrorKind> {
        Ok(match node {
            Node::Number(v) => Operand::Scalar(*v),
            Node::Time => Operand::Scalar(t as f64 / 1000.0),
            Node::Instant(i) => {
                let u = &plan.selector_uses()[*i];
                Operand::Vector(self.pinned(
                    u.at_ms,
                    t,
                    || pin_key("v", u),
                    |e| Ok(e.instant(store, u, t, |s| s.v)),
                )?)
            }
            Node::Range {
                func,
                source,
                params,
            } => {
                let mut args = Vec::with_capacity(params.len());
                for p in params {
                    args.push(self.scalar(store, plan, p, t)?);
                }
                if *func == RangeFunc::HoltWinters {
                    check_holt_winters(&args)?;
                }
                let mut v = self.range_source(store, plan, source, *func, &args, t)?;
                // A selector that pins the metric name yields series of that one name: dropping
                // it cannot reorder or collide them, so no series' labels need reading.
                let one_name = matches!(source, RangeSource::Selector(i)
                    if plan.selector_uses()[*i].selector.metric_name.is_some());
                // last_over_time acts like an offset: the series keeps its name.
                if *func != RangeFunc::LastOverTime {
                    if one_name {
                        v.elems.iter_mut().for_each(|e| e.labels.drop_name = true);
                    } else {
                        v.drop_names()?;
                    }
                }
                Operand::Vector(v)
            }
            Node::AbsentOverTime { source, labels } => {
                let present =
                    self.range_source(store, plan, source, RangeFunc::PresentOverTime, &[], t)?;
                Operand::Vector(if present.elems.is_empty() {
                    InstantVector::one(labels.clone(), 1.0)
                } else {
                    InstantVector::empty()
                })
            }
            Node::Absent { arg, labels } => {
                let v = self.vector(store, plan, arg, t)?;
                Operand::Vector(if v.elems.is_empty() {
                    InstantVector::one(labels.clone(), 1.0)
                } else {
                    InstantVector::empty()
                })
            }
            Node::Aggregate {
                op,
                grouping,
                param,
                arg,
            } => {
                let param = match param {
                    Some(p) => Some(self.scalar(store, plan, p, t)?),
                    None => None,
                };
                let v = self.vector(store, plan, arg, t)?;
                Operand::Vector(self.aggregate(op, grouping, param, v)?)
            }
            Node::Binary {
                op,
                lhs,
                rhs,
                matching,
            } => {
                let l = self.node(store, plan, lhs, t)?;
                let r = self.node(store, plan, rhs, t)?;
                match (l, r) {
                    (Operand::Scalar(a), Operand::Scalar(b)) => Operand::Scalar(op.scalar(a, b)),
                    (Operand::Vector(v), Operand::Scalar(b)) => {
                        Operand::Vector(vector_scalar(*op, v, b, false, matching.return_bool)?)
                    }
                    (Operand::Scalar(a), Operand::Vector(v)) => {
                        Operand::Vector(vector_scalar(*op, v, a, true, matching.return_bool)?)
                    }
                    (Operand::Vector(a), Operand::Vector(b)) => Operand::Vector(match op {
                        BinOp::And => self.and_unless(a, b, &matching.labels, true),
                        BinOp::Unless => self.and_unless(a, b, &matching.labels, false),
                        BinOp::Or => self.or(a, b, &matching.labels),
                        _ => self.vector_binop(*op, a, b, matching)?,
                    }),
                }
            }
            Node::Neg(x) => match self.node(store, plan, x, t)? {
                Operand::Scalar(v) => Operand::Scalar(-v),
                Operand::Vector(mut v) => {
                    v.elems.iter_mut().for_each(|e| e.v = -e.v);
                    v.drop_names()?;
                    Operand::Vector(v)
                }
            },
            Node::Vector(s) => {
                let v = self.scalar(store, plan, s, t)?;
                Operand::Vector(InstantVector::one(Labels::default(), v))
            }
            Node::Scalar(x) => {
                let v = self.vector(store, plan, x, t)?;
                Operand::Scalar(match v.elems.as_slice() {
                    [only] => only.v,
                    _ => f64::NAN,
                })
            }
            Node::Math(f, x) => self.map(store, plan, x, t, |v| f.apply(v))?,
            Node::Round(x, to) => {
                let to = match to {
                    Some(n) => self.scalar(store, plan, n, t)?,
                    None => 1.0,
                };
                // `funcRound` multiplies by the inverse, which rounds fewer results wrong.
                let inverse = 1.0 / to;
                self.map(store, plan, x, t, |v| (v * inverse + 0.5).floor() / inverse)?
            }
            Node::Clamp { arg, min, max } => {
                let min = match min {
                    Some(n) => Some(self.scalar(store, plan, n, t)?),
                    None => None,
                };
                let max = match max {
                    Some(n) => Some(self.scalar(store, plan, n, t)?),
                    None => None,
                };
                match (min, max) {
                    (Some(lo), Some(hi)) if hi < lo => {
                        self.vector(store, plan, arg, t)?;
                        Operand::Vector(InstantVector::empty())
                    }
                    (Some(lo), Some(hi)) => self.map(store, plan, arg, t, |v| {
                        kernels::go_max(lo, kernels::go_min(hi, v))
                    })?,
                    (Some(lo), None) => {
                        self.map(store, plan, arg, t, |v| kernels::go_max(lo, v))?
                    }
                    (None, Some(hi)) => {
                        self.map(store, plan, arg, t, |v| kernels::go_min(hi, v))?
                    }
                    (None, None) => self.map(store, plan, arg, t, |v| v)?,
                }
            }
            Node::Timestamp(x) => match x.as_ref() {
                // A selector's own sample times; anything else was evaluated at T.
                Node::Instant(i) => {
                    let u = &plan.selector_uses()[*i];
                    let mut v = self.pinned(
                        u.at_ms,
                        t,
                        || pin_key("t", u),
                        |e| Ok(e.instant(store, u, t, |s| s.t as f64 / 1000.0)),
                    )?;
                    v.drop_names()?;
                    Operand::Vector(v)
                }
                _ => self.map(store, plan, x, t, |_| t as f64 / 1000.0)?,
            },
            Node::Date(f, arg) => {
                let mut v = match arg {
                    Some(a) => self.vector(store, plan, a, t)?,
                    None => InstantVector::one(Labels::default(), t as f64 / 1000.0),
                };
                v.elems
                    .iter_mut()
                    .for_each(|e| e.v = kernels::date_field(*f, e.v));
                v.drop_names()?;
                Operand::Vector(v)
            }
            Node::HistogramQuantile(q, x) => {
                let q = self.scalar(store, plan, q, t)?;
                let v = self.vector(store, plan, x, t)?;
                Operand::Vector(self.histogram_quantile(q, v))
            }
            Node::LabelReplace {
                arg,
                dst,
                replacement,
                src,
                regex,
            } => {
                let mut v = self.vector(store, plan, arg, t)?;
                for e in &mut v.elems {
                    let Some(caps) = regex.captures(e.labels.get(src).unwrap_or("")) else {
                        continue;
                    };
                    let mut value = String::new();
                    caps.expand(replacement, &mut value);
                    e.labels = SeriesLabels::new(with_label(&e.labels, dst, &value));
                    v.sorted = false;
                }
                Operand::Vector(v)
            }
            Node::LabelJoin {
                arg,
                dst,
                sep,
                srcs,
            } => {
                let mut v = self.vector(store, plan, arg, t)?;
                for e in &mut v.elems {
                    let joined = srcs
                        .iter()
                        .map(|s| e.labels.get(s).unwrap_or(""))
                        .collect::<Vec<_>>()
                        .join(sep);
                    e.labels = SeriesLabels::new(with_label(&e.labels, dst, &joined));
                }
                v.sorted = false;
                Operand::Vector(v)
            }
            Node::Sort(x) => self.node(store, plan, x, t)?,
        })
    }

    fn vector(
        &mut self,
        store: &SeriesStore,
        plan: &Plan,
        node: &Node,
        t: i64,
    ) -> Result<InstantVector, EvalErrorKind> {
        match self.node(store, plan, node, t)? {
            Operand::Vector(v) => Ok(v),
            // The planner only builds vector arguments here.
            Operand::Scalar(_) => Ok(InstantVector::empty()),
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
            Operand::Scalar(v) => Ok(v),
            // The planner only builds scalar arguments here.
            Operand::Vector(_) => Ok(f64::NAN),
        }
    }

    /// A function applied to each value of a vector; all of them drop `__name__`.
    fn map(
        &mut self,
        store: &SeriesStore,
        plan: &Plan,
        node: &Node,
        t: i64,
        f: impl Fn(f64) -> f64,
    ) -> Result<Operand, EvalErrorKind> {
        let mut v = self.vector(store, plan, node, t)?;
        v.elems.iter_mut().for_each(|e| e.v = f(e.v));
        v.drop_names()?;
        Ok(Operand::Vector(v))
    }

    /// Visits the series `u` matches with their samples in `[from, to]` (only the newest when
    /// `last_only`), setting `self.values[i]` to `value(samples)` for the `i`-th, then returns
    /// the values as elements in label order. Series no value came from are left out.
    fn visit(
        &mut self,
        store: &SeriesStore,
        u: &SelectorUse,
        (from, to): (i64, i64),
        last_only: bool,
        mut value: impl FnMut(&[Sample], &mut Vec<Sample>) -> Option<f64>,
    ) -> InstantVector {
        if !self.selectors.contains_key(&u.key) {
            self.selectors
                .insert(u.key.clone(), SelectorState::default());
        }
        let state = self.selectors.get_mut(&u.key).expect("inserted above");
        let (values, fresh) = (&mut self.values, &mut self.fresh);
        values.clear();
        let changed = store.visit(
            &u.selector,
            &mut state.postings,
            from,
            to,
            last_only,
            &mut self.scratch,
            |_, samples| values.push(value(samples, fresh)),
        );
        let labels = state.postings.labels();
        if changed {
            let perm = if state.order.series.is_empty() {
                let mut perm: Vec<u32> = (0..labels.len() as u32).collect();
                perm.sort_unstable_by(|&a, &b| labels[a as usize].cmp(&labels[b as usize]));
                perm
            } else {
                resort(&state.order, labels)
            };
            state.order = SortedOrder {
                series: labels.into(),
                perm,
            };
        }
        let mut elems = Vec::with_capacity(labels.len());
        for &i in &state.order.perm {
            if let Some(v) = self.values[i as usize] {
                elems.push(SeriesValue {
                    labels: SeriesLabels {
                        set: state.order.series.clone(),
                        index: i,
                        drop_name: false,
                    },
                    v,
                });
            }
        }
        InstantVector {
            elems,
            sorted: true,
        }
    }

    /// An instant selector: each series' newest sample in [T−o−5m, T−o] (T is the `@` time when
    /// there is one), unless it is a staleness marker (`vectorSelectorSingle`). `value` picks
    /// what the element carries: the sample's value, or its time for `timestamp()`.
    fn instant(
        &mut self,
        store: &SeriesStore,
        u: &SelectorUse,
        t: i64,
        value: fn(&Sample) -> f64,
    ) -> InstantVector {
        let end = u.at_ms.unwrap_or(t) - u.offset_ms;
        self.visit(
            store,
            u,
            (end - LOOKBACK_DELTA_MS, end),
            true,
            |samples, _| {
                samples
                    .last()
                    .filter(|last| !is_stale_marker(last.v))
                    .map(value)
            },
        )
    }

    fn range_source(
        &mut self,
        store: &SeriesStore,
        plan: &Plan,
        source: &RangeSource,
        func: RangeFunc,
        params: &[f64],
        t: i64,
    ) -> Result<InstantVector, EvalErrorKind> {
        let key = |what: String| format!("{func:?}{params:?}|{what}");
        match source {
            RangeSource::Selector(i) => {
                let u = &plan.selector_uses()[*i];
                self.pinned(
                    u.at_ms,
                    t,
                    || key(pin_key("r", u)),
                    |e| Ok(e.range(store, u, func, params, t)),
                )
            }
            RangeSource::Subquery(sq) => {
                // A subquery has no text of its own: its place in its plan names it.
                let place = || key(format!("{:p}|{}", &**sq, plan.expr()));
                self.pinned(sq.at_ms, t, place, |e| {
                    e.subquery(store, plan, sq, func, params, t)
                })
            }
        }
    }

    /// A read pinned with `@ at` answers the same at every step: Prometheus evaluates such a
    /// step-invariant expression once per query. In a stream the samples at `at` are final once
    /// a step reaches it (steps run after their lateness), so the first non-empty answer from
    /// then on is kept and given at every later step, after the store has let the samples go.
    /// An empty answer is not kept: the samples may still arrive (a backfill, a restart).
    fn pinned(
        &mut self,
        at: Option<i64>,
        t: i64,
        key: impl FnOnce() -> String,
        read: impl FnOnce(&mut Self) -> Result<InstantVector, EvalErrorKind>,
    ) -> Result<InstantVector, EvalErrorKind> {
        let Some(_) = at.filter(|&at| t >= at) else {
            return read(self);
        };
        let key = key();
        if let Some(v) = self.pinned.get(&key) {
            return Ok(v.clone());
        }
        let v = read(self)?;
        if !v.elems.is_empty() && self.pinned.len() < MAX_PINNED {
            self.pinned.insert(key, v.clone());
        }
        Ok(v)
    }

    /// A range function over a range selector: samples in [T−o−r, T−o], both ends included
    /// (Prometheus 2.x), staleness markers left out.
    fn range(
        &mut self,
        store: &SeriesStore,
        u: &SelectorUse,
        func: RangeFunc,
        params: &[f64],
        t: i64,
    ) -> InstantVector {
        let end = u.at_ms.unwrap_or(t) - u.offset_ms;
        let window = Window {
            start: end - u.range_ms.unwrap_or(0),
            end,
        };
        self.visit(
            store,
            u,
            (window.start, window.end),
            false,
            |samples, fresh| {
                let samples = if samples.iter().any(|s| is_stale_marker(s.v)) {
                    fresh.clear();
                    fresh.extend(samples.iter().filter(|s| !is_stale_marker(s.v)));
                    &fresh[..]
                } else {
                    samples
                };
                if samples.is_empty() {
                    return None;
                }
                kernels::range_func(func, samples, window, params, t)
            },
        )
    }

    /// A range function over a subquery: the inner expression evaluated at every multiple of
    /// the resolution in [T−o−range, T−o] (Prometheus aligns subquery steps to the epoch, not to
    /// the query), each series' points then read as a range selector's samples.
    fn subquery(
        &mut self,
        store: &SeriesStore,
        plan: &Plan,
        sq: &Subquery,
        func: RangeFunc,
        params: &[f64],
        t: i64,
    ) -> Result<InstantVector, EvalErrorKind> {
        let end = sq.at_ms.unwrap_or(t) - sq.offset_ms;
        let window = Window {
            start: end - sq.range_ms,
            end,
        };
        let mut index: HashMap<Labels, usize> = HashMap::new();
        let mut series: Vec<(Labels, Vec<Sample>)> = Vec::new();
        let mut ts = window.start.div_euclid(sq.step_ms) * sq.step_ms;
        if ts < window.start {
            ts += sq.step_ms;
        }
        while ts <= end {
            let mut v = self.vector(store, plan, &sq.expr, ts)?;
            v.sort()?;
            for e in v.elems {
                let labels = e.labels.to_labels();
                let sample = Sample { t: ts, v: e.v };
                match index.get(&labels) {
                    Some(&i) => series[i].1.push(sample),
                    None => {
                        index.insert(labels.clone(), series.len());
                        series.push((labels, vec![sample]));
                    }
                }
            }
            ts += sq.step_ms;
        }
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let elems = series
            .into_iter()
            .filter_map(|(labels, samples)| {
                kernels::range_func(func, &samples, window, params, t).map(|v| SeriesValue {
                    labels: SeriesLabels::new(labels),
                    v,
                })
            })
            .collect();
        Ok(InstantVector {
            elems,
            sorted: true,
        })
    }

    /// Each series' group under `grouping` (`by`/`without`), as indices into the returned label
    /// sets, which are in order of first appearance.
    fn groups<'a>(
        &mut self,
        grouping: &LabelSet,
        elems: impl Iterator<Item = Vec<(&'a str, &'a str)>>,
    ) -> (Vec<usize>, Vec<Labels>) {
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut labels = Vec::new();
        let mut of = Vec::new();
        for pairs in elems {
            let kept = || {
                pairs.iter().copied().filter(|(n, _)| match grouping {
                    LabelSet::Only(keep) => keep.iter().any(|k| k == n),
                    LabelSet::AllBut(drop) => *n != METRIC_NAME && !drop.iter().any(|d| d == n),
                })
            };
            signature(kept(), &mut self.key);
            let g = match index.get(self.key.as_slice()) {
                Some(&g) => g,
                None => {
                    let l: Vec<(&str, &str)> = kept().collect();
                    index.insert(self.key.clone(), labels.len());
                    labels.push(Labels::from_sorted(&l));
                    labels.len() - 1
                }
            };
            of.push(g);
        }
        (of, labels)
    }

    /// `aggregation`: series visited in label order, one accumulator (or heap, or value list)
    /// per group.
    fn aggregate(
        &mut self,
        op: &AggOp,
        grouping: &LabelSet,
        param: Option<f64>,
        mut v: InstantVector,
    ) -> Result<InstantVector, EvalErrorKind> {
        v.sort()?;
        let empty_by = matches!(grouping, LabelSet::Only(l) if l.is_empty());
        let (of, labels) = match op {
            AggOp::CountValues(label) => {
                let values: Vec<String> = v.elems.iter().map(|e| go_format_float(e.v)).collect();
                let mut by = grouping.clone();
                if let LabelSet::Only(l) = &mut by {
                    l.push(label.clone());
                }
                let pairs = v.elems.iter().zip(&values).map(|(e, value)| {
                    let mut p: Vec<(&str, &str)> =
                        e.labels.iter().filter(|(n, _)| n != label).collect();
                    p.push((label.as_str(), value.as_str()));
                    p.sort_unstable_by(|a, b| a.0.cmp(b.0));
                    p
                });
                self.groups(&by, pairs)
            }
            _ if empty_by => {
                // No grouping: one group with no labels, no signatures to build.
                let n = usize::from(!v.elems.is_empty());
                (vec![0; v.elems.len()], vec![Labels::default(); n])
            }
            _ => self.groups(grouping, v.elems.iter().map(|e| e.labels.iter().collect())),
        };
        match op {
            AggOp::Topk | AggOp::Bottomk => return self.topk(op, param, v, &of, labels.len()),
            AggOp::Quantile => {
                let mut values: Vec<Vec<f64>> = vec![Vec::new(); labels.len()];
                for (e, &g) in v.elems.iter().zip(&of) {
                    values[g].push(e.v);
                }
                let q = param.unwrap_or(f64::NAN);
                return Ok(InstantVector {
                    sorted: labels.len() <= 1,
                    elems: labels
                        .into_iter()
                        .zip(values)
                        .map(|(l, mut vs)| SeriesValue {
                            labels: SeriesLabels::new(l),
                            v: kernels::quantile(q, &mut vs),
                        })
                        .collect(),
                });
            }
            _ => {}
        }
        let mut accs: Vec<Option<Accumulator>> = vec![None; labels.len()];
        for (e, &g) in v.elems.iter().zip(&of) {
            match &mut accs[g] {
                Some(acc) => acc.add(op, e.v),
                slot @ None => *slot = Some(Accumulator::new(op, e.v)),
            }
        }
        Ok(InstantVector {
            sorted: labels.len() <= 1,
            elems: labels
                .into_iter()
                .zip(accs)
                .filter_map(|(l, acc)| {
                    acc.map(|a| SeriesValue {
                        labels: SeriesLabels::new(l),
                        v: a.finish(op),
                    })
                })
                .collect(),
        })
    }

    /// `topk`/`bottomk`: Prometheus's heap per group, fed in label order; the chosen series keep
    /// all their labels.
    fn topk(
        &mut self,
        op: &AggOp,
        param: Option<f64>,
        v: InstantVector,
        of: &[usize],
        groups: usize,
    ) -> Result<InstantVector, EvalErrorKind> {
        let f = param.unwrap_or(f64::NAN);
        // `convertibleToInt64`
        if !(f <= i64::MAX as f64 && f >= i64::MIN as f64) {
            return Err(EvalErrorKind::Int64Overflow(go_format_g(f)));
        }
        let k = f as i64;
        if k < 1 {
            return Ok(InstantVector::empty());
        }
        let k = usize::try_from(k).unwrap_or(usize::MAX);
        let top = *op == AggOp::Topk;
        let values: Vec<f64> = v.elems.iter().map(|e| e.v).collect();
        // vectorByValueHeap / vectorByReverseValueHeap: NaN is "less" than everything.
        let less = |a: &usize, b: &usize| {
            let (x, y) = (values[*a], values[*b]);
            x.is_nan() || if top { x < y } else { x > y }
        };
        let mut heaps: Vec<Vec<usize>> = vec![Vec::new(); groups];
        for (i, &g) in of.iter().enumerate() {
            let h = &mut heaps[g];
            if h.is_empty() {
                h.push(i);
                continue;
            }
            let s = values[i];
            let root = values[h[0]];
            let better = if top { root < s } else { root > s };
            if h.len() < k || better || root.is_nan() {
                if h.len() == k {
                    if k == 1 {
                        h[0] = i;
                        continue;
                    }
                    heap_pop(h, &less);
                }
                heap_push(h, i, &less);
            }
        }
        let mut keep = vec![false; v.elems.len()];
        heaps.iter().flatten().for_each(|&i| keep[i] = true);
        let elems = v
            .elems
            .into_iter()
            .zip(keep)
            .filter_map(|(e, k)| k.then_some(e))
            .collect();
        Ok(InstantVector {
            elems,
            sorted: true,
        })
    }

    /// `funcHistogramQuantile` over classic buckets: series grouped by all labels but `le`
    /// (the name included), each group's `le` bounds parsed as Go parses floats (series without
    /// a valid `le` are skipped); the result drops `__name__` and `le`.
    fn histogram_quantile(&mut self, q: f64, v: InstantVector) -> InstantVector {
        let mut index: HashMap<Vec<u8>, usize> = HashMap::new();
        let mut groups: Vec<(Labels, Vec<Bucket>)> = Vec::new();
        for e in &v.elems {
            let Some(upper) = e.labels.get("le").and_then(golang::parse_float) else {
                continue;
            };
            let bucket = Bucket { upper, count: e.v };
            signature(e.labels.iter().filter(|(n, _)| *n != "le"), &mut self.key);
            match index.get(self.key.as_slice()) {
                Some(&g) => groups[g].1.push(bucket),
                None => {
                    index.insert(self.key.clone(), groups.len());
                    let labels: Vec<(&str, &str)> = e
                        .labels
                        .iter()
                        .filter(|(n, _)| *n != "le" && *n != METRIC_NAME)
                        .collect();
                    groups.push((Labels::from_sorted(&labels), vec![bucket]));
                }
            }
        }
        InstantVector {
            sorted: false,
            elems: groups
                .into_iter()
                .map(|(labels, mut buckets)| SeriesValue {
                    labels: SeriesLabels::new(labels),
                    v: kernels::bucket_quantile(q, &mut buckets),
                })
                .collect(),
        }
    }

    /// `VectorBinop`: one-to-one, many-to-one (`group_left`) or one-to-many (`group_right`,
    /// computed as many-to-one with the sides swapped). The "one" side's signatures must be
    /// unique; each "many" series takes the one-side series with its signature, unmatched
    /// series vanish, comparisons without `bool` drop the pairs they fail.
    fn vector_binop(
        &mut self,
        op: BinOp,
        lhs: InstantVector,
        rhs: InstantVector,
        m: &Matching,
    ) -> Result<InstantVector, EvalErrorKind> {
        if lhs.elems.is_empty() || rhs.elems.is_empty() {
            return Ok(InstantVector::empty());
        }
        let swap = m.card == Card::OneToMany;
        let (many, one) = if swap { (rhs, lhs) } else { (lhs, rhs) };
        let mut right: HashMap<Vec<u8>, usize> = HashMap::with_capacity(one.elems.len());
        for (i, e) in one.elems.iter().enumerate() {
            signature(match_pairs(&e.labels, &m.labels), &mut self.key);
            if let Some(&j) = right.get(self.key.as_slice()) {
                let group: Vec<(&str, &str)> = e
                    .labels
                    .iter()
                    .filter(|(n, _)| match &m.labels {
                        LabelSet::Only(on) => on.iter().any(|k| k == n),
                        LabelSet::AllBut(ign) => !ign.iter().any(|k| k == n),
                    })
                    .collect();
                return Err(EvalErrorKind::ManyToMany {
                    group: Labels::from_sorted(&group).to_string(),
                    side: if swap { "left" } else { "right" },
                    first: e.labels.to_labels().to_string(),
                    second: one.elems[j].labels.to_labels().to_string(),
                });
            }
            right.insert(self.key.clone(), i);
        }
        let drop = op.drops_name() || m.return_bool;
        // Plain `a / b`: the result is lhs's own label set, without the name.
        let keeps_lhs_labels = m.card == Card::OneToOne
            && m.labels == LabelSet::AllBut(Vec::new())
            && m.include.is_empty();
        let first_name = many
            .elems
            .first()
            .and_then(|e| e.labels.name())
            .map(str::to_owned);
        let mut same_name = true;
        // One-to-one: each "one" series may be taken once (its signature is unique).
        let mut taken = vec![false; one.elems.len()];
        let mut many_seen: HashMap<Vec<u8>, HashSet<Labels>> = HashMap::new();
        let mut elems = Vec::with_capacity(many.elems.len().min(one.elems.len()));
        let many_sorted = many.sorted;
        for e in many.elems {
            signature(match_pairs(&e.labels, &m.labels), &mut self.key);
            let Some(&j) = right.get(self.key.as_slice()) else {
                continue;
            };
            let o = &one.elems[j];
            let (vl, vr) = if swap { (o.v, e.v) } else { (e.v, o.v) };
            let (mut v, keep) = op.apply(vl, vr);
            if m.return_bool {
                v = if keep { 1.0 } else { 0.0 };
            } else if !keep {
                continue;
            }
            same_name &= e.labels.name() == first_name.as_deref();
            let labels = if keeps_lhs_labels {
                SeriesLabels {
                    drop_name: e.labels.drop_name || drop,
                    ..e.labels
                }
            } else {
                result_labels(&e.labels, &o.labels, drop, m)
            };
            if m.card == Card::OneToOne {
                if std::mem::replace(&mut taken[j], true) {
                    return Err(EvalErrorKind::ManyToOne);
                }
            } else if !many_seen
                .entry(self.key.clone())
                .or_default()
                .insert(labels.to_labels())
            {
                return Err(EvalErrorKind::GroupingNotUnique);
            }
            elems.push(SeriesValue { labels, v });
        }
        Ok(InstantVector {
            elems,
            // lhs order minus a name all series shared is still label order
            sorted: many_sorted && keeps_lhs_labels && (same_name || !drop),
        })
    }

    /// `VectorAnd` (`keep_matched`) and `VectorUnless`: lhs series with (without) a matching
    /// rhs signature.
    fn and_unless(
        &mut self,
        lhs: InstantVector,
        rhs: InstantVector,
        matching: &LabelSet,
        keep_matched: bool,
    ) -> InstantVector {
        if lhs.elems.is_empty() || (keep_matched && rhs.elems.is_empty()) {
            return InstantVector::empty();
        }
        if rhs.elems.is_empty() {
            return lhs;
        }
        let mut right: HashSet<Vec<u8>> = HashSet::with_capacity(rhs.elems.len());
        for e in &rhs.elems {
            signature(match_pairs(&e.labels, matching), &mut self.key);
            right.insert(self.key.clone());
        }
        let sorted = lhs.sorted;
        let mut elems = lhs.elems;
        elems.retain(|e| {
            signature(match_pairs(&e.labels, matching), &mut self.key);
            right.contains(self.key.as_slice()) == keep_matched
        });
        InstantVector { elems, sorted }
    }

    /// `VectorOr`: all of lhs, then each rhs series whose signature no lhs series has.
    fn or(&mut self, lhs: InstantVector, rhs: InstantVector, matching: &LabelSet) -> InstantVector {
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
        InstantVector { elems, sorted }
    }
}

/// `VectorscalarBinop`: `swap` when the scalar is on the left. A comparison keeps the vector's
/// value whichever side it is on; `bool` turns the outcome into 1 or 0 and drops the name.
fn vector_scalar(
    op: BinOp,
    mut v: InstantVector,
    s: f64,
    swap: bool,
    return_bool: bool,
) -> Result<InstantVector, EvalErrorKind> {
    v.elems.retain_mut(|e| {
        let (l, r) = if swap { (s, e.v) } else { (e.v, s) };
        let (mut value, mut keep) = op.apply(l, r);
        if op.is_comparison() && swap {
            value = r;
        }
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
            keep = true;
        }
        e.v = value;
        keep
    });
    if op.drops_name() || return_bool {
        v.drop_names()?;
    }
    Ok(v)
}

/// `resultMetric`: the "many" side's labels, without the name when the operator drops it,
/// reduced to the `on` labels (or without the `ignoring` ones) when one-to-one, plus the
/// `group_left`/`group_right` labels copied from the "one" side (removed where it lacks them).
fn result_labels(
    many: &SeriesLabels,
    one: &SeriesLabels,
    drop_name: bool,
    m: &Matching,
) -> SeriesLabels {
    let mut pairs: Vec<(&str, &str)> = many
        .iter()
        .filter(|(n, _)| !(drop_name && *n == METRIC_NAME))
        .filter(|(n, _)| {
            m.card != Card::OneToOne
                || match &m.labels {
                    LabelSet::Only(on) => on.iter().any(|k| k == n),
                    LabelSet::AllBut(ignoring) => !ignoring.iter().any(|k| k == n),
                }
        })
        .collect();
    for name in &m.include {
        pairs.retain(|(n, _)| n != name);
        if let Some(v) = one.get(name).filter(|v| !v.is_empty()) {
            pairs.push((name, v));
        }
    }
    pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    SeriesLabels::new(Labels::from_sorted(&pairs))
}

/// `labels` with `name` set to `value`, or removed when `value` is empty (as Prometheus's label
/// builder does).
fn with_label(labels: &SeriesLabels, name: &str, value: &str) -> Labels {
    let mut pairs: Vec<(&str, &str)> = labels.iter().filter(|(n, _)| *n != name).collect();
    if !value.is_empty() {
        pairs.push((name, value));
        pairs.sort_unstable_by(|a, b| a.0.cmp(b.0));
    }
    Labels::from_sorted(&pairs)
}

/// `holt_winters` refuses factors outside (0, 1) at every step, as Prometheus does.
fn check_holt_winters(args: &[f64]) -> Result<(), EvalErrorKind> {
    let (sf, tf) = (args[0], args[1]);
    if sf <= 0.0 || sf >= 1.0 || sf.is_nan() {
        return Err(EvalErrorKind::HoltWintersFactor {
            which: "smoothing",
            short: "sf",
            got: format!("{sf:.6}"),
        });
    }
    if tf <= 0.0 || tf >= 1.0 || tf.is_nan() {
        return Err(EvalErrorKind::HoltWintersFactor {
            which: "trend",
            short: "tf",
            got: format!("{tf:.6}"),
        });
    }
    Ok(())
}

/// Go's `strconv.FormatFloat(v, 'f', -1, 64)`: the shortest decimal that reads back as `v`,
/// never in exponent form (`count_values` labels).
fn go_format_float(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v == f64::INFINITY {
        "+Inf".to_owned()
    } else if v == f64::NEG_INFINITY {
        "-Inf".to_owned()
    } else {
        format!("{v}")
    }
}

/// Go's `%v` of a float64, for the one error message that prints a scalar.
fn go_format_g(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_owned()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{v:e}")
    }
}

/// The label order of `series` when a selector's set of series changed since `old` (pods come
/// and go): series seen before are laid out in their old order, the new ones after them, and a
/// stable sort, which detects the sorted run, only has to place the newcomers. The old cache
/// still holds its `Arc`s, so an equal pointer is the very same series, never a reused address.
fn resort(old: &SortedOrder, series: &[Arc<Labels>]) -> Vec<u32> {
    let index: HashMap<*const Labels, u32> = series
        .iter()
        .enumerate()
        .map(|(i, l)| (Arc::as_ptr(l), i as u32))
        .collect();
    let mut perm: Vec<u32> = old
        .perm
        .iter()
        .filter_map(|&j| index.get(&Arc::as_ptr(&old.series[j as usize])).copied())
        .collect();
    let mut placed = vec![false; series.len()];
    perm.iter().for_each(|&i| placed[i as usize] = true);
    perm.extend((0..series.len() as u32).filter(|&i| !placed[i as usize]));
    perm.sort_by(|&a, &b| series[a as usize].cmp(&series[b as usize]));
    perm
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::series::StoreLimits;
    use crate::series::store::STALE_NAN_BITS;

    const M: i64 = 60_000;

    fn store() -> SeriesStore {
        SeriesStore::new(StoreLimits {
            max_series: 1000,
            retention_ms: 3_600_000,
        })
    }

    /// Appends a series given as `name{k="v",...}` with samples `(t_ms, v)`.
    fn add(st: &SeriesStore, series: &str, samples: &[(i64, f64)]) {
        let (name, rest) = series.split_once('{').unwrap_or((series, "}"));
        let mut pairs = vec![("__name__", name)];
        for kv in rest
            .trim_end_matches('}')
            .split(',')
            .filter(|s| !s.is_empty())
        {
            let (k, v) = kv.split_once('=').expect("k=v");
            pairs.push((k, v.trim_matches('"')));
        }
        pairs.sort();
        let samples: Vec<Sample> = samples.iter().map(|&(t, v)| Sample { t, v }).collect();
        st.append(&pairs, &samples);
    }

    /// `n` samples one minute apart from t=0: v0, v0+step, ...
    fn line(n: i64, v0: f64, step: f64) -> Vec<(i64, f64)> {
        (0..n).map(|i| (i * M, v0 + step * i as f64)).collect()
    }

    fn eval(st: &SeriesStore, expr: &str, t: i64) -> Result<PlanValue, EvalError> {
        let plan = Plan::parse(expr).expect("plans");
        Evaluator::new().eval(st, &plan, t)
    }

    /// The vector as `(labels as written by Display, value)` pairs.
    fn vector(st: &SeriesStore, expr: &str, t: i64) -> Vec<(String, f64)> {
        match eval(st, expr, t) {
            Ok(PlanValue::Vector(v)) => v.into_iter().map(|(l, v)| (l.to_string(), v)).collect(),
            other => panic!("{expr}: expected a vector, got {other:?}"),
        }
    }

    fn scalar(st: &SeriesStore, expr: &str, t: i64) -> f64 {
        match eval(st, expr, t) {
            Ok(PlanValue::Scalar(v)) => v,
            other => panic!("{expr}: expected a scalar, got {other:?}"),
        }
    }

    fn one(v: &[(String, f64)]) -> f64 {
        assert_eq!(v.len(), 1, "{v:?}");
        v[0].1
    }

    #[test]
    fn left_boundary_sample_counts_as_in_2_42() {
        let st = store();
        // c = 0, 10, ..., 100 at 0m..10m. At 10m, [5m] holds 5m..10m inclusive: 6 samples,
        // result 50 over 300s with no extrapolation: 50 * (300/300/300). 2.42 answers
        // 1.6666666666666669E-01 (promtool); excluding the 5m sample would give 40*(300/240)/300.
        add(&st, r#"c{a="1"}"#, &line(11, 0.0, 10.0));
        let v = vector(&st, "rate(c[5m])", 10 * M);
        assert_eq!(v, vec![(r#"{a="1"}"#.to_owned(), 0.16666666666666669)]);
        // offset 3m reads [2m, 7m]: the same slope, same answer (2.42 agrees)
        assert_eq!(
            one(&vector(&st, "rate(c[5m] offset 3m)", 10 * M)),
            0.16666666666666669
        );
        // increase over [2m, 7m] = 70 - 20
        assert_eq!(one(&vector(&st, "increase(c[5m] offset 3m)", 10 * M)), 50.0);
        // last_over_time keeps the name, rate drops it
        assert_eq!(
            vector(&st, "last_over_time(c[1m])", 10 * M)[0].0,
            r#"{__name__="c", a="1"}"#
        );
    }

    #[test]
    fn matches_2_42_across_a_reset_and_a_staleness_marker() {
        let st = store();
        // 15s apart from 405s to 705s; a reset after 125.13 and a staleness marker at 600s
        let values = [
            "104.63", "106.13", "113.38", "116.38", "117.88", "125.13", "4.08", "4.58", "6.08",
            "6.58", "7.08", "10.08", "10.08", "stale", "18.83", "26.08", "33.33", "34.83", "36.33",
            "37.83", "45.08",
        ];
        let samples: Vec<(i64, f64)> = values
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let v = v.parse().unwrap_or(f64::from_bits(STALE_NAN_BITS));
                (405_000 + i as i64 * 15_000, v)
            })
            .collect();
        add(&st, r#"cpu{mode="idle",node="c"}"#, &samples);
        let t = 705_000;
        // By hand: window [405s, 705s] holds 20 samples (405s included, the marker left out);
        // increase = 45.08 - 104.63 + 125.13 = 65.58 with no extrapolation; irate = 7.25/15.
        // Exact values printed by Prometheus 2.42 (promtool test rules, eval_time 11m45s):
        for (expr, want) in [
            ("rate(cpu[5m])", 2.1860000000000002E-01),
            ("increase(cpu[5m])", 6.558E+01),
            ("irate(cpu[5m])", 4.8333333333333334E-01),
            ("idelta(cpu[5m])", 7.25),
            ("deriv(cpu[5m])", -2.8037429053535823E-01),
            ("count_over_time(cpu[5m])", 20.0),
        ] {
            assert_eq!(one(&vector(&st, expr, t)), want, "{expr}");
        }
    }

    #[test]
    fn extrapolation_on_both_sides() {
        let st = store();
        // 20 samples at 5s, 20s, ..., 290s holding 100..119; window [0, 300]s at T=300s.
        // result 19, sampled 285, avg 15, threshold 16.5; toStart 5 and toEnd 10 both below
        // it (zero point 285*100/19 s away), so interval = 285 + 5 + 10 = 300.
        let samples: Vec<(i64, f64)> = (0..20)
            .map(|i| (5_000 + i * 15_000, 100.0 + i as f64))
            .collect();
        add(&st, "c", &samples);
        let t = 300_000;
        assert_eq!(
            one(&vector(&st, "increase(c[5m])", t)),
            19.0 * (300.0 / 285.0)
        );
        assert_eq!(
            one(&vector(&st, "rate(c[5m])", t)),
            19.0 * (300.0 / 285.0 / 300.0)
        );
    }

    #[test]
    fn counter_reset_and_single_sample() {
        let st = store();
        // 10, 20, 5, 15 at 0..3m: result (15-10) + 20 = 25 over [0,3m]: rate 25*(1/180)
        add(
            &st,
            "c",
            &[(0, 10.0), (M, 20.0), (2 * M, 5.0), (3 * M, 15.0)],
        );
        assert_eq!(
            one(&vector(&st, "rate(c[3m])", 3 * M)),
            25.0 * (1.0 / 180.0)
        );
        // [30s] at 3m holds the one sample at 3m: no rate, but a count of 1
        assert!(vector(&st, "rate(c[30s])", 3 * M).is_empty());
        assert!(vector(&st, "irate(c[30s])", 3 * M).is_empty());
        assert_eq!(one(&vector(&st, "count_over_time(c[30s])", 3 * M)), 1.0);
    }

    #[test]
    fn instant_lookback_gap_and_staleness() {
        let st = store();
        add(&st, r#"g{a="old"}"#, &[(0, 1.0)]);
        add(
            &st,
            r#"g{a="stale"}"#,
            &[(0, 1.0), (2 * M, f64::from_bits(STALE_NAN_BITS))],
        );
        add(&st, r#"g{a="live"}"#, &[(0, 1.0), (M, 2.0), (2 * M, 3.0)]);
        // at 5m the 0m sample is exactly 5m old: still seen (both ends included)
        let at5 = vector(&st, "g", 5 * M);
        assert_eq!(at5.len(), 2, "{at5:?}"); // "stale" is gone: its newest sample is the marker
        assert_eq!(at5[0], (r#"{__name__="g", a="live"}"#.to_owned(), 3.0));
        assert_eq!(at5[1], (r#"{__name__="g", a="old"}"#.to_owned(), 1.0));
        // one ms later the gap exceeds the 5m lookback for "old"
        let later = vector(&st, "g", 5 * M + 1);
        assert_eq!(later.len(), 1);
        // a range skips the marker: count 1 (the 0m sample), not 2
        assert_eq!(
            vector(&st, r#"count_over_time(g{a="stale"}[5m])"#, 4 * M),
            vec![(r#"{a="stale"}"#.to_owned(), 1.0)]
        );
        // and a marker inside a counter's range is not a reset
        add(
            &st,
            "c",
            &[
                (0, 1.0),
                (M, 2.0),
                (90_000, f64::from_bits(STALE_NAN_BITS)),
                (2 * M, 3.0),
            ],
        );
        assert_eq!(one(&vector(&st, "increase(c[2m])", 2 * M)), 2.0);
        // offset moves the lookback: at 9m, offset 2m reads [2m, 7m] and sees "live" at 2m
        assert_eq!(vector(&st, r#"g{a="live"} offset 2m"#, 9 * M)[0].1, 3.0);
        assert!(vector(&st, r#"g{a="live"} offset 2m"#, 9 * M + 1).is_empty());
        assert_eq!(vector(&st, r#"g{a="live"}"#, 9 * M + 1).len(), 0);
    }

    fn nodes(st: &SeriesStore) {
        // cpu{node, mode}: 1, 2, 3, 4
        add(st, r#"cpu{mode="user",node="a"}"#, &[(0, 1.0)]);
        add(st, r#"cpu{mode="sys",node="a"}"#, &[(0, 2.0)]);
        add(st, r#"cpu{mode="user",node="b"}"#, &[(0, 3.0)]);
        add(st, r#"cpu{mode="sys",node="b"}"#, &[(0, 4.0)]);
    }

    #[test]
    fn aggregations_by_and_without() {
        let st = store();
        nodes(&st);
        let a = r#"{node="a"}"#.to_owned();
        let b = r#"{node="b"}"#.to_owned();
        assert_eq!(
            vector(&st, "sum by (node) (cpu)", 0),
            vec![(a.clone(), 3.0), (b.clone(), 7.0)]
        );
        assert_eq!(
            vector(&st, "sum without (mode) (cpu)", 0),
            vec![(a.clone(), 3.0), (b.clone(), 7.0)]
        );
        assert_eq!(
            vector(&st, "avg by (node) (cpu)", 0),
            vec![(a.clone(), 1.5), (b.clone(), 3.5)]
        );
        assert_eq!(
            vector(&st, "min by (node) (cpu)", 0),
            vec![(a.clone(), 1.0), (b.clone(), 3.0)]
        );
        assert_eq!(
            vector(&st, "max without (mode) (cpu)", 0),
            vec![(a.clone(), 2.0), (b.clone(), 4.0)]
        );
        assert_eq!(
            vector(&st, "count by (node) (cpu)", 0),
            vec![(a.clone(), 2.0), (b, 2.0)]
        );
        // |1 - 1.5| = |2 - 1.5| = 0.5
        assert_eq!(vector(&st, "stddev by (node) (cpu)", 0)[0], (a, 0.5));
        // by mode: sys = 2+4, user = 1+3
        assert_eq!(
            vector(&st, "sum by (mode) (cpu)", 0),
            vec![
                (r#"{mode="sys"}"#.to_owned(), 6.0),
                (r#"{mode="user"}"#.to_owned(), 4.0)
            ]
        );
        // no grouping: one series without labels; mean 2.5, population stddev sqrt(1.25)
        assert_eq!(vector(&st, "avg(cpu)", 0), vec![("{}".to_owned(), 2.5)]);
        assert_eq!(one(&vector(&st, "stddev(cpu)", 0)), 1.25f64.sqrt());
        // without keeps everything else but never __name__
        assert_eq!(
            vector(&st, "sum without (node) (cpu)", 0)[0].0,
            r#"{mode="sys"}"#
        );
        assert!(vector(&st, "sum(nothing)", 0).is_empty());
    }

    #[test]
    fn vector_matching_on_and_ignoring() {
        let st = store();
        add(&st, r#"avail{node="a",fs="/"}"#, &[(0, 25.0)]);
        add(&st, r#"avail{node="b",fs="/"}"#, &[(0, 10.0)]);
        add(&st, r#"size{node="a",fs="/"}"#, &[(0, 100.0)]);
        add(&st, r#"size{node="c",fs="/"}"#, &[(0, 100.0)]);
        add(&st, r#"total{node="a"}"#, &[(0, 50.0)]);
        // all labels but the name: only node a matches; b and c vanish
        assert_eq!(
            vector(&st, "1 - avail / size", 0),
            vec![(r#"{fs="/", node="a"}"#.to_owned(), 0.75)]
        );
        // on(node): the result carries only node
        assert_eq!(
            vector(&st, "avail / on(node) total", 0),
            vec![(r#"{node="a"}"#.to_owned(), 0.5)]
        );
        // ignoring(fs): the result is lhs without fs
        assert_eq!(
            vector(&st, "avail / ignoring(fs) total", 0),
            vec![(r#"{node="a"}"#.to_owned(), 0.5)]
        );
        // without a modifier, fs makes them differ: nothing matches
        assert!(vector(&st, "avail / total", 0).is_empty());
    }

    #[test]
    fn duplicate_matches_fail_the_step() {
        let st = store();
        add(&st, r#"x{a="1"}"#, &[(0, 5.0)]);
        add(&st, r#"x{a="1",b="2"}"#, &[(0, 7.0)]);
        add(&st, r#"y{a="1"}"#, &[(0, 1.0)]);
        add(&st, r#"z{a="1"}"#, &[(0, 2.0)]);
        // two lhs series take the same rhs one (2.42: "multiple matches for labels")
        let e = eval(&st, "x / on(a) y", 0).expect_err("many-to-one");
        assert_eq!(e.kind, EvalErrorKind::ManyToOne);
        // two rhs series share a signature
        let e = eval(&st, "y / on(a) x", 0).expect_err("many-to-many");
        assert!(matches!(e.kind, EvalErrorKind::ManyToMany { .. }), "{e}");
        assert!(e.to_string().contains("many-to-many matching not allowed"));
        // dropping the name makes y and z collide (2.42: "same labelset")
        let e = eval(&st, r#"{__name__=~"y|z"} * 2"#, 0).expect_err("duplicate");
        assert_eq!(e.kind, EvalErrorKind::DuplicateLabelset);
        // an empty side matches nothing and fails nothing (2.42 agrees)
        assert!(vector(&st, r#"nothing / on(a) x"#, 0).is_empty());
    }

    #[test]
    fn or_keeps_lhs_and_adds_unmatched_rhs() {
        let st = store();
        add(&st, r#"a{k="1"}"#, &[(0, 1.0)]);
        add(&st, r#"b{k="1"}"#, &[(0, 10.0)]);
        add(&st, r#"b{k="2"}"#, &[(0, 20.0)]);
        assert_eq!(
            vector(&st, "a or b", 0),
            vec![
                (r#"{__name__="a", k="1"}"#.to_owned(), 1.0),
                (r#"{__name__="b", k="2"}"#.to_owned(), 20.0)
            ]
        );
        // on(): every series has the same (empty) signature: a alone
        assert_eq!(vector(&st, "a or on() b", 0).len(), 1);
        // the default restarts feature: an empty sum falls back to vector(0)
        assert_eq!(
            vector(&st, "sum(rate(nothing[5m])) or vector(0)", 0),
            vec![("{}".to_owned(), 0.0)]
        );
        assert_eq!(
            vector(&st, "sum(b) or vector(0)", 0),
            vec![("{}".to_owned(), 30.0)]
        );
    }

    #[test]
    fn scalars_functions_and_division_by_zero() {
        let st = store();
        add(&st, r#"v{k="1"}"#, &[(0, -3.0)]);
        add(&st, r#"v{k="2"}"#, &[(0, 0.0)]);
        add(&st, r#"w{k="1"}"#, &[(0, 4.0)]);
        assert_eq!(scalar(&st, "scalar(w)", 0), 4.0);
        assert!(scalar(&st, "scalar(v)", 0).is_nan(), "two series: NaN");
        assert!(scalar(&st, "scalar(nothing)", 0).is_nan());
        assert_eq!(scalar(&st, "1 + 2 * 3 - -1", 0), 8.0);
        assert_eq!(scalar(&st, "1 / 0", 0), f64::INFINITY);
        assert_eq!(scalar(&st, "-1 / 0", 0), f64::NEG_INFINITY);
        assert!(scalar(&st, "0 / 0", 0).is_nan());
        let d = vector(&st, "w / v", 0);
        assert_eq!(d, vec![(r#"{k="1"}"#.to_owned(), 4.0 / -3.0)]);
        let d = vector(&st, "1 / v", 0);
        assert_eq!(d[1], (r#"{k="2"}"#.to_owned(), f64::INFINITY));
        assert!(vector(&st, "v / 0", 0)[1].1.is_nan());
        assert_eq!(vector(&st, "abs(v)", 0)[0], (r#"{k="1"}"#.to_owned(), 3.0));
        assert_eq!(vector(&st, "-v", 0)[0].1, 3.0);
        assert_eq!(vector(&st, "clamp_min(v, -1)", 0)[0].1, -1.0);
        assert_eq!(vector(&st, "clamp_max(v, -1)", 0)[1].1, -1.0);
        assert_eq!(vector(&st, "clamp_max(v, scalar(w))", 0)[1].1, 0.0);
        assert_eq!(
            vector(&st, "vector(2) * 3", 0),
            vec![("{}".to_owned(), 6.0)]
        );
        assert_eq!(vector(&st, "w * scalar(w)", 0)[0].1, 16.0);
    }

    /// The same value at 0m..10m, one sample a minute.
    fn flat(v: f64) -> Vec<(i64, f64)> {
        line(11, v, 0.0)
    }

    // The expected values of the tests below were printed by Prometheus 2.42 (`promtool test
    // rules`, series one sample a minute from 0m, evaluated at 5m unless said otherwise).

    #[test]
    fn reads_pinned_with_at_keep_their_answer_after_the_store_lets_the_samples_go() {
        let st = store(); // one hour of retention
        let minutes: Vec<(i64, f64)> = (0..=10).map(|i| (i * M, i as f64 * 10.0)).collect();
        add(&st, "x", &minutes);
        let exprs = [
            "x @ 300",
            "timestamp(x @ 300)",
            "rate(x[2m] @ 300)",
            "max_over_time(x[2m:1m] @ 300)",
        ];
        let plans: Vec<Plan> = exprs
            .iter()
            .map(|e| Plan::parse(e).expect("plans"))
            .collect();
        let mut ev = Evaluator::new();
        let answers = |ev: &mut Evaluator, t| -> Vec<Vec<(String, f64)>> {
            plans
                .iter()
                .map(|p| match ev.eval(&st, p, t) {
                    Ok(PlanValue::Vector(v)) => {
                        v.into_iter().map(|(l, v)| (l.to_string(), v)).collect()
                    }
                    other => panic!("{}: {other:?}", p.expr()),
                })
                .collect()
        };
        let at_6m = answers(&mut ev, 6 * M);
        assert_eq!(at_6m[0], [(r#"{__name__="x"}"#.to_owned(), 50.0)]);
        assert_eq!(at_6m[1], [("{}".to_owned(), 300.0)]);
        assert_eq!(at_6m[2], [("{}".to_owned(), 10.0 / 60.0)]);
        assert_eq!(at_6m[3], [("{}".to_owned(), 50.0)]);
        // three hours on, the samples at 5m have left the store: a new evaluator finds nothing,
        // the one that answered at 6m answers the same
        add(&st, "x", &[(3 * 60 * M, 1.0)]);
        st.evict();
        assert!(
            answers(&mut Evaluator::new(), 3 * 60 * M)
                .iter()
                .all(Vec::is_empty)
        );
        assert_eq!(answers(&mut ev, 3 * 60 * M), at_6m);
        // before its time, a pinned read is not kept: an evaluator that first saw it empty
        // answers once the samples are there
        let st2 = store();
        let plan = Plan::parse("x @ 300").expect("plans");
        let mut ev = Evaluator::new();
        match ev.eval(&st2, &plan, 6 * M) {
            Ok(PlanValue::Vector(v)) => assert!(v.is_empty()),
            other => panic!("{other:?}"),
        }
        add(&st2, "x", &minutes);
        match ev.eval(&st2, &plan, 7 * M) {
            Ok(PlanValue::Vector(v)) => assert_eq!(v.len(), 1),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn histogram_quantile_fixes_non_monotonic_buckets_and_needs_inf() {
        let st = store();
        // at 5m: mono 50, 40 (a non-monotonic 0.5 bucket), 75, 100
        for (le, step) in [("0.1", 10.0), ("0.5", 8.0), ("1", 15.0), ("+Inf", 20.0)] {
            add(
                &st,
                &format!(r#"h_bucket{{job="mono",le="{le}"}}"#),
                &line(11, 0.0, step),
            );
        }
        // no +Inf bucket
        for (le, step) in [("1", 5.0), ("2", 9.0)] {
            add(
                &st,
                &format!(r#"h_bucket{{job="noinf",le="{le}"}}"#),
                &line(11, 0.0, step),
            );
        }
        // 60% of observations below 2: the 0.9 rank falls in +Inf
        for (le, step) in [("1", 5.0), ("2", 6.0), ("+Inf", 10.0)] {
            add(
                &st,
                &format!(r#"h_bucket{{job="top",le="{le}"}}"#),
                &line(11, 0.0, step),
            );
        }
        // the lowest bucket's bound is not above zero
        for (le, step) in [("-1", 5.0), ("+Inf", 10.0)] {
            add(
                &st,
                &format!(r#"h_bucket{{job="neg",le="{le}"}}"#),
                &line(11, 0.0, step),
            );
        }
        // a series without le is skipped
        add(&st, r#"h_bucket{job="mono"}"#, &flat(1000.0));
        let at = |q: &str| {
            let v = vector(&st, &format!("histogram_quantile({q}, h_bucket)"), 5 * M);
            let labels: Vec<&str> = v.iter().map(|(l, _)| l.as_str()).collect();
            assert_eq!(
                labels,
                [
                    r#"{job="mono"}"#,
                    r#"{job="neg"}"#,
                    r#"{job="noinf"}"#,
                    r#"{job="top"}"#
                ]
            );
            v.into_iter().map(|(_, v)| v).collect::<Vec<f64>>()
        };
        let v = at("0.5");
        assert_eq!((v[0], v[1], v[3]), (0.1, -1.0, 1.0));
        assert!(v[2].is_nan());
        let v = at("0.9");
        assert_eq!((v[0], v[1], v[3]), (1.0, -1.0, 2.0));
        // 0.45: rank 45 in the first bucket (0..0.1, 50 observations)
        assert_eq!(at("0.45")[0], 9.000000000000001E-02);
        assert_eq!(at("0.45")[3], 0.9);
        assert_eq!(at("-1")[0], f64::NEG_INFINITY);
        assert_eq!(at("2")[0], f64::INFINITY);
        // through rate(): the name is gone already, the same groups
        let v = vector(&st, "histogram_quantile(0.99, rate(h_bucket[5m]))", 5 * M);
        assert_eq!(v[0], (r#"{job="mono"}"#.to_owned(), 1.0));
        assert_eq!(v[3], (r#"{job="top"}"#.to_owned(), 2.0));
    }

    /// Ties depend on the order series reach the heap. These answers are a real Prometheus 2.42's
    /// over a block made with `promtool tsdb create-blocks-from openmetrics` (whose querier
    /// returns series in label order, as canopy feeds them); `promtool test rules` creates its
    /// series in map order and answers ties at random.
    #[test]
    fn topk_and_bottomk_break_ties_as_prometheus_heaps_do() {
        let st = store();
        for (i, v) in [("a", 1.0), ("b", 2.0), ("c", 2.0), ("d", 2.0), ("e", 1.0)] {
            add(&st, &format!(r#"t{{i="{i}"}}"#), &flat(v));
        }
        let picked = |expr: &str| -> Vec<String> {
            vector(&st, expr, 5 * M)
                .into_iter()
                .map(|(l, _)| l.trim_start_matches(r#"{__name__="t", i=""#).to_owned())
                .map(|l| l.trim_end_matches("\"}").to_owned())
                .collect()
        };
        assert_eq!(picked("topk(2, t)"), ["b", "c"]);
        assert_eq!(picked("topk(1, t)"), ["b"]);
        assert_eq!(picked("topk(3, t)"), ["b", "c", "d"]);
        assert_eq!(picked("bottomk(2, t)"), ["a", "e"]);
        assert_eq!(picked("bottomk(3, t)"), ["a", "c", "e"]);
        assert!(picked("topk(0, t)").is_empty());
        let e = eval(&st, "topk(scalar(nothing), t)", 5 * M).expect_err("NaN k");
        assert_eq!(e.kind.to_string(), "Scalar value NaN overflows int64");
        // quantile, stdvar, group, count_values
        assert_eq!(one(&vector(&st, "quantile(0.3, t)", 5 * M)), 1.2);
        assert_eq!(
            one(&vector(&st, "stdvar(t)", 5 * M)),
            2.4000000000000005E-01
        );
        assert_eq!(vector(&st, "group by (i) (t)", 5 * M).len(), 5);
        assert_eq!(
            vector(&st, r#"count_values("v", t)"#, 5 * M),
            [
                (r#"{v="1"}"#.to_owned(), 2.0),
                (r#"{v="2"}"#.to_owned(), 3.0)
            ]
        );
    }

    #[test]
    fn group_left_and_group_right_copy_labels_from_the_one_side() {
        let st = store();
        add(&st, r#"info{node="a",version="1",zone="z1"}"#, &flat(1.0));
        add(&st, r#"info{node="b",version="1",zone="z2"}"#, &flat(1.0));
        add(&st, r#"cpu{mode="user",node="a"}"#, &flat(5.0));
        add(&st, r#"cpu{mode="sys",node="a"}"#, &flat(3.0));
        add(&st, r#"cpu{mode="user",node="b"}"#, &flat(7.0));
        let want = vec![
            (r#"{mode="sys", node="a", zone="z1"}"#.to_owned(), 3.0),
            (r#"{mode="user", node="a", zone="z1"}"#.to_owned(), 5.0),
            (r#"{mode="user", node="b", zone="z2"}"#.to_owned(), 7.0),
        ];
        assert_eq!(
            vector(&st, "cpu * on(node) group_left(zone) info", 5 * M),
            want
        );
        assert_eq!(
            vector(&st, "info * on(node) group_right(zone) cpu", 5 * M),
            want
        );
        // a comparison keeps the name; a label the one side lacks is not copied
        let v = vector(&st, "cpu > on(node) group_left(zone, missing) info", 5 * M);
        assert_eq!(
            v[0].0,
            r#"{__name__="cpu", mode="sys", node="a", zone="z1"}"#
        );
        // without group_left, two cpu series of node a take one info series
        let e = eval(&st, "cpu * on(node) info", 5 * M).expect_err("many-to-one");
        assert_eq!(e.kind, EvalErrorKind::ManyToOne);
        // group_right with the many side on the right still needs a unique one side
        let e = eval(&st, "cpu * on(node) group_right info", 5 * M).expect_err("dup");
        assert!(e.to_string().contains("on the left hand-side"), "{e}");
        // and/unless
        assert_eq!(
            vector(&st, "cpu and on(node) info{zone=\"z2\"}", 5 * M).len(),
            1
        );
        assert_eq!(
            vector(&st, "cpu unless on(node) info{zone=\"z2\"}", 5 * M).len(),
            2
        );
        assert_eq!(vector(&st, "cpu unless nothing", 5 * M).len(), 3);
        assert!(vector(&st, "cpu and nothing", 5 * M).is_empty());
    }

    #[test]
    fn comparisons_bool_and_the_other_operators() {
        let st = store();
        for (i, v) in [("a", 1.0), ("b", 2.0)] {
            add(&st, &format!(r#"t{{i="{i}"}}"#), &flat(v));
        }
        let a = r#"{i="a"}"#.to_owned();
        let b = r#"{i="b"}"#.to_owned();
        assert_eq!(
            vector(&st, "2 > bool t", 5 * M),
            [(a.clone(), 1.0), (b.clone(), 0.0)]
        );
        // the vector's value is kept whichever side it is on, and so is the name
        assert_eq!(
            vector(&st, "1.5 < t", 5 * M),
            [(r#"{__name__="t", i="b"}"#.to_owned(), 2.0)]
        );
        assert_eq!(
            vector(&st, "t >= 2", 5 * M),
            [(r#"{__name__="t", i="b"}"#.to_owned(), 2.0)]
        );
        // atan2 keeps the name (2.42's shouldDropMetricName leaves it out)
        assert_eq!(
            vector(&st, "t atan2 2", 5 * M)[0],
            (r#"{__name__="t", i="a"}"#.to_owned(), 4.636476090008061E-01)
        );
        assert_eq!(
            vector(&st, "t % 2", 5 * M),
            [(a.clone(), 1.0), (b.clone(), 0.0)]
        );
        assert_eq!(vector(&st, "t ^ 3", 5 * M)[1], (b.clone(), 8.0));
        assert_eq!(vector(&st, "t == bool on(i) t", 5 * M)[0], (a.clone(), 1.0));
        assert_eq!(scalar(&st, "1 < bool 2", 5 * M), 1.0);
        assert_eq!(scalar(&st, "2 ^ 10 % 1000", 5 * M), 24.0);
        assert_eq!(vector(&st, "round(t / 3, 0.1)", 5 * M)[1], (b, 0.7));
        assert_eq!(vector(&st, "sgn(t - 1)", 5 * M)[0], (a, 0.0));
    }

    #[test]
    fn subqueries_step_on_multiples_of_their_resolution() {
        let st = store();
        add(&st, "s", &line(11, 0.0, 1.0));
        // at 7m30s, [5m:2m] evaluates s at 4m and 6m (2m30s is before the range): 4 + 6
        assert_eq!(one(&vector(&st, "count_over_time(s[5m:2m])", 450_000)), 2.0);
        assert_eq!(one(&vector(&st, "sum_over_time(s[5m:2m])", 450_000)), 10.0);
        // at 8m, offset 1m: [3m, 7m] holds 4m and 6m (2.42 agrees)
        assert_eq!(
            one(&vector(&st, "sum_over_time(s[4m:2m] offset 1m)", 8 * M)),
            10.0
        );
        // both ends included: at 8m, [4m:2m] holds 4m, 6m and 8m
        assert_eq!(one(&vector(&st, "count_over_time(s[4m:2m])", 8 * M)), 3.0);
        assert_eq!(
            one(&vector(&st, "max_over_time(rate(s[2m])[5m:90s])", 9 * M)),
            1.6666666666666666E-02
        );
        assert_eq!(
            one(&vector(&st, "holt_winters(s[5m], 0.3, 0.6)", 9 * M)),
            8.999999999999998
        );
        assert_eq!(one(&vector(&st, "predict_linear(s[5m], 60)", 9 * M)), 10.0);
        let e = eval(&st, "holt_winters(s[5m], 1, 0.5)", 9 * M).expect_err("factor");
        assert!(e.to_string().contains("invalid smoothing factor"), "{e}");
        // timestamp of a selector is its sample's time; of anything else, T
        assert_eq!(one(&vector(&st, "timestamp(s offset 30s)", 5 * M)), 240.0);
        assert_eq!(one(&vector(&st, "timestamp(-s)", 5 * M + 1)), 300.001);
        // @ pins the time
        assert_eq!(one(&vector(&st, "s @ 180", 9 * M)), 3.0);
    }

    #[test]
    fn label_and_date_functions() {
        let st = store();
        add(&st, r#"t{i="a"}"#, &flat(1.0));
        assert_eq!(
            vector(
                &st,
                r#"label_replace(t, "x", "$1-$2y", "i", "(.)(.*)")"#,
                5 * M
            )[0]
            .0,
            r#"{__name__="t", i="a", x="a-"}"#
        );
        // no match: unchanged; an empty result deletes the label
        assert_eq!(
            vector(&st, r#"label_replace(t, "x", "y", "i", "b")"#, 5 * M)[0].0,
            r#"{__name__="t", i="a"}"#
        );
        assert_eq!(
            vector(&st, r#"label_replace(t, "i", "", "i", ".*")"#, 5 * M)[0].0,
            r#"{__name__="t"}"#
        );
        assert_eq!(
            vector(
                &st,
                r#"label_join(t, "x", "-", "i", "__name__", "nope")"#,
                5 * M
            )[0]
            .0,
            r#"{__name__="t", i="a", x="a-t-"}"#
        );
        // two series made equal fail the step
        add(&st, r#"t{i="b"}"#, &flat(1.0));
        let e = eval(&st, r#"label_replace(t, "i", "", "i", ".*")"#, 5 * M).expect_err("dup");
        assert_eq!(e.kind, EvalErrorKind::DuplicateLabelset);
        for (expr, want) in [
            ("day_of_year(vector(1700000000))", 318.0),
            ("days_in_month(vector(1709000000))", 29.0),
            ("day_of_week(vector(1700000000))", 2.0),
            ("hour(vector(1700000000))", 22.0),
            ("minute(vector(1700000000))", 13.0),
            ("month(vector(1700000000))", 11.0),
            ("year(vector(1700000000))", 2023.0),
            ("day_of_month(vector(1700000000))", 14.0),
        ] {
            assert_eq!(one(&vector(&st, expr, 5 * M)), want, "{expr}");
        }
        // no argument: vector(time()); 1970-01-01 00:05 was a Thursday
        assert_eq!(one(&vector(&st, "day_of_week()", 5 * M)), 4.0);
        assert_eq!(
            vector(&st, r#"absent(nope{a="1",b=~"x"})"#, 5 * M),
            [(r#"{a="1"}"#.to_owned(), 1.0)]
        );
        assert!(vector(&st, "absent(t)", 5 * M).is_empty());
        assert!(vector(&st, "absent_over_time(t[1m])", 5 * M).is_empty());
        assert_eq!(vector(&st, "absent_over_time(t[1m])", 12 * M).len(), 1);
    }

    #[test]
    fn evaluator_reuses_orders_across_steps_and_plans() {
        let st = store();
        for i in 0..50 {
            let l = format!(r#"c{{i="{i:02}"}}"#);
            add(&st, &l, &line(11, i as f64, 1.0 + i as f64));
        }
        let plans: Vec<Plan> = ["sum(rate(c[5m]))", "count(c)", "max(c)"]
            .iter()
            .map(|e| Plan::parse(e).expect("plans"))
            .collect();
        let mut ev = Evaluator::new();
        for t in [5 * M, 6 * M, 10 * M] {
            let out = ev.eval_all(&st, &plans, t);
            // each series rises 1+i per minute: rates sum to sum(1+i)/60 = 1275/60
            match &out[0] {
                Ok(PlanValue::Vector(v)) => assert!((v[0].1 - 1275.0 / 60.0).abs() < 1e-9),
                other => panic!("{other:?}"),
            }
            assert_eq!(
                out[1],
                Ok(PlanValue::Vector(vec![(Labels::default(), 50.0)]))
            );
        }
        // a new series changes the order: it must be seen
        add(&st, r#"c{i="zz"}"#, &[(10 * M, 1000.0)]);
        let out = ev.eval_all(&st, &plans, 10 * M);
        assert_eq!(
            out[1],
            Ok(PlanValue::Vector(vec![(Labels::default(), 51.0)]))
        );
        assert_eq!(
            out[2],
            Ok(PlanValue::Vector(vec![(Labels::default(), 1000.0)]))
        );
        // every series' newest sample is at 10m: at 15m+1ms all fall out of the 5m lookback
        let out = ev.eval_all(&st, &plans, 15 * M + 1);
        assert_eq!(out[1], Ok(PlanValue::Vector(vec![])));
        add(&st, r#"c{i="00"}"#, &[(15 * M, 7.0)]);
        add(&st, r#"c{i="aa"}"#, &[(15 * M, 9.0)]);
        let out = ev.eval_all(&st, &plans, 15 * M + 1);
        assert_eq!(
            out[1],
            Ok(PlanValue::Vector(vec![(Labels::default(), 2.0)]))
        );
        assert_eq!(
            out[2],
            Ok(PlanValue::Vector(vec![(Labels::default(), 9.0)]))
        );
    }

    #[test]
    fn resort_keeps_label_order_when_series_come_and_go() {
        let l = |s: &str| Arc::new(Labels::from_pairs([("__name__", "m"), ("k", s)]));
        let (a, b, c, d) = (l("a"), l("b"), l("c"), l("d"));
        // previously selected in store order [c, a, d]; sorted a, c, d
        let old = SortedOrder {
            series: vec![c.clone(), a.clone(), d.clone()].into(),
            perm: vec![1, 0, 2],
        };
        // now d is gone and b arrived, store order [b, c, a]
        let now = vec![b, c, a];
        let perm = resort(&old, &now);
        let keys: Vec<&str> = perm
            .iter()
            .filter_map(|&i| now[i as usize].get("k"))
            .collect();
        assert_eq!(keys, ["a", "b", "c"]);
    }
}
