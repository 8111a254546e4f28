//! Growing the forest: the training data presorted once per fit, trees grown on scoped threads
//! from their own forks of the seed, each node's best split found by [`Scan`], and the leaves laid
//! out over one shared table of target rows.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::ArrayView2;

use super::predict::add_mean;
use super::scan::{Avx2, Lane, Scan, add_lanes};
use super::{
    FEATURE_THRESHOLD, LeafEntry, RandomForestError, RandomForestParams, RandomForestRegressor,
    RegressionTree, check_finite, check_matrix, entries_of,
};
use crate::matrix::flat;
use crate::rng::Rng;
use crate::tree::{FlatTree, Node};

/// A tree as one thread grew it: entries name training rows, and a leaf that holds its mean
/// points at row `child` of `own`.
struct GrownTree {
    tree: RegressionTree,
    own: Vec<f64>,
}

/// Lays out the forest's target table and points every leaf into it: the training rows some
/// entry names, in row order, then every tree's own means. If the rows named would take more
/// bytes than the means of the leaves naming them (few trees, so few leaves share a row), those
/// leaves hold their means instead, computed as predicting would have.
fn share_rows(y: &[f64], k: usize, mut grown: Vec<GrownTree>) -> (Vec<f64>, Vec<RegressionTree>) {
    const UNUSED: u32 = u32::MAX;
    let mut slot = vec![UNUSED; y.len() / k];
    let mut named = 0usize;
    for e in grown.iter().flat_map(|g| &g.tree.entries) {
        named += usize::from(slot[e.row as usize] == UNUSED);
        slot[e.row as usize] = 0;
    }
    let sharing: usize = grown
        .iter()
        .flat_map(|g| &g.tree.tree.nodes)
        .filter(|n| n.is_leaf() && n.value != 0.0)
        .count();
    let entries: usize = grown.iter().map(|g| g.tree.entries.len()).sum();
    if entries * std::mem::size_of::<LeafEntry>() + named * k * 8 > sharing * k * 8 {
        for g in &mut grown {
            let entries = std::mem::take(&mut g.tree.entries);
            for node in g.tree.tree.nodes.iter_mut() {
                if node.is_leaf() && node.value != 0.0 {
                    let at = g.own.len();
                    g.own.resize(at + k, 0.0);
                    add_mean(
                        entries_of(&entries, node),
                        node.value,
                        y,
                        k,
                        &mut g.own[at..],
                    );
                    *node = Node::leaf((at / k) as u32, 0.0);
                }
            }
        }
        slot.fill(UNUSED);
    }
    let mut targets = Vec::new();
    for (i, s) in slot.iter_mut().enumerate() {
        if *s != UNUSED {
            *s = (targets.len() / k) as u32;
            targets.extend_from_slice(&y[i * k..(i + 1) * k]);
        }
    }
    let trees = grown
        .into_iter()
        .map(|mut g| {
            let base = (targets.len() / k) as u32;
            for node in g.tree.tree.nodes.iter_mut() {
                if node.is_leaf() && node.value == 0.0 {
                    node.child += base;
                }
            }
            for e in &mut g.tree.entries {
                e.row = slot[e.row as usize];
            }
            targets.extend_from_slice(&g.own);
            g.tree
        })
        .collect();
    (targets, trees)
}

impl RandomForestRegressor {
    /// Fits on the rows of `x` (one column per feature) and their outputs `y` (one column per
    /// output), using every available core. Views in standard layout are read in place; a view
    /// in another layout is copied once.
    pub fn fit(
        params: &RandomForestParams,
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
    ) -> Result<Self, RandomForestError> {
        let threads = std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN);
        Self::fit_with_threads(params, x, y, threads)
    }

    /// As [`fit`](Self::fit), on at most `threads` threads. The model does not depend on `threads`.
    pub fn fit_with_threads(
        params: &RandomForestParams,
        x: ArrayView2<'_, f64>,
        y: ArrayView2<'_, f64>,
        threads: NonZeroUsize,
    ) -> Result<Self, RandomForestError> {
        let (n_features, n_outputs) = (x.ncols(), y.ncols());
        let (x, y) = (flat(&x), flat(&y));
        Self::fit_impl(
            params,
            &x,
            n_features,
            &y,
            n_outputs,
            threads,
            Avx2::detect(),
        )
    }

    /// [`fit_with_threads`](Self::fit_with_threads) on row-major `x` and `y`, with the split
    /// scan's AVX2 variant only if `avx2` is given.
    pub(super) fn fit_impl(
        params: &RandomForestParams,
        x: &[f64],
        n_features: usize,
        y: &[f64],
        n_outputs: usize,
        threads: NonZeroUsize,
        avx2: Option<Avx2>,
    ) -> Result<Self, RandomForestError> {
        params.validate()?;
        let n = check_matrix("x", x, n_features)?;
        let n_y = check_matrix("y", y, n_outputs)?;
        if n != n_y {
            return Err(RandomForestError::RowMismatch {
                x_rows: n,
                y_rows: n_y,
            });
        }
        if n == 0 {
            return Err(RandomForestError::Empty);
        }
        if n > i32::MAX as usize {
            return Err(RandomForestError::TooManyRows(n));
        }
        for (r, row) in x.chunks_exact(n_features).enumerate() {
            check_finite("x", r, row)?;
        }
        for (r, row) in y.chunks_exact(n_outputs).enumerate() {
            check_finite("y", r, row)?;
        }
        let data = Training::new(x, n_features, y, n_outputs, params, avx2);
        let root = Rng::new(params.seed);
        let next = AtomicUsize::new(0);
        let threads = threads.get().min(params.n_estimators);
        let mut grown: Vec<(usize, GrownTree)> = std::thread::scope(|scope| {
            let workers: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut builder = TreeBuilder::new(&data);
                        let mut mine = Vec::new();
                        loop {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= params.n_estimators {
                                break mine;
                            }
                            let mut rng = root.fork(i as u64);
                            mine.push((i, builder.grow(&mut rng)));
                        }
                    })
                })
                .collect();
            workers
                .into_iter()
                .flat_map(|w| match w.join() {
                    Ok(trees) => trees,
                    Err(panic) => std::panic::resume_unwind(panic),
                })
                .collect()
        });
        grown.sort_unstable_by_key(|(i, _)| *i);
        let (targets, trees) =
            share_rows(y, n_outputs, grown.into_iter().map(|(_, t)| t).collect());
        Ok(RandomForestRegressor {
            params: params.clone(),
            n_features,
            n_outputs,
            targets,
            trees,
        })
    }
}

/// The training data laid out for split search, shared read-only by every tree's thread.
struct Training<'a> {
    n: usize,
    n_features: usize,
    n_outputs: usize,
    /// Row indices sorted by each feature's value (`sorted[f · n ..][..n]`), and those values
    /// in the same order, so that a tree reads both sequentially.
    sorted: Vec<u32>,
    sorted_values: Vec<f64>,
    y: &'a [f64],
    params: &'a RandomForestParams,
    /// Features evaluated per node.
    max_features: usize,
    /// Present when the split scan may use AVX2 (detected once per fit).
    avx2: Option<Avx2>,
}

impl<'a> Training<'a> {
    fn new(
        x: &[f64],
        n_features: usize,
        y: &'a [f64],
        n_outputs: usize,
        params: &'a RandomForestParams,
        avx2: Option<Avx2>,
    ) -> Self {
        let n = x.len() / n_features;
        let mut columns = vec![0.0; x.len()];
        for (i, row) in x.chunks_exact(n_features).enumerate() {
            for (f, &v) in row.iter().enumerate() {
                columns[f * n + i] = v;
            }
        }
        let mut sorted = Vec::with_capacity(x.len());
        let mut sorted_values = Vec::with_capacity(x.len());
        for col in columns.chunks_exact(n) {
            let start = sorted.len();
            sorted.extend(0..n as u32);
            // a stable sort: equal values stay in row order, so the order is fully determined
            sorted[start..].sort_by(|&a, &b| col[a as usize].total_cmp(&col[b as usize]));
            sorted_values.extend(sorted[start..].iter().map(|&i| col[i as usize]));
        }
        let max_features =
            ((params.max_features * n_features as f64) as usize).clamp(1, n_features);
        Training {
            n,
            n_features,
            n_outputs,
            sorted,
            sorted_values,
            y,
            params,
            max_features,
            avx2,
        }
    }
}

/// The best split found at a node so far.
struct Split {
    proxy: f64,
    feature: usize,
    /// Rows `..=last_left` of the node's segment, in this feature's order, go left.
    last_left: usize,
    threshold: f64,
}

/// A node waiting to be split or made a leaf.
struct Pending {
    node: usize,
    start: usize,
    end: usize,
    depth: usize,
    /// A feature whose segment `start..end` holds exactly this node's rows (after a split that
    /// skipped partitioning the other features, only the split feature's does).
    rows_in: usize,
}

/// One thread's scratch space, reused from tree to tree so that growing allocates only the tree.
struct TreeBuilder<'a> {
    data: &'a Training<'a>,
    /// Bootstrap count per original row.
    counts: Vec<u32>,
    /// Original row → this tree's compact row index, and back.
    compact: Vec<u32>,
    original: Vec<u32>,
    /// Per compact row: weight, weight × outputs (in [`Lane`]s, zero-padded), weight × Σ outputs².
    weight: Vec<f64>,
    wy: Vec<Lane>,
    wyy: Vec<f64>,
    /// Lanes per output row.
    lanes: usize,
    /// Per feature, the tree's compact rows in value order (`order[f · m ..][..m]`) and their
    /// values; a node owns one contiguous segment of every feature's order.
    order: Vec<u32>,
    values: Vec<f64>,
    goes_left: Vec<bool>,
    spill_order: Vec<u32>,
    spill_values: Vec<f64>,
    features: Vec<u32>,
    left: Vec<Lane>,
    total: Vec<Lane>,
}

impl<'a> TreeBuilder<'a> {
    fn new(data: &'a Training<'a>) -> Self {
        TreeBuilder {
            data,
            counts: vec![0; data.n],
            compact: vec![0; data.n],
            original: Vec::new(),
            weight: Vec::new(),
            wy: Vec::new(),
            wyy: Vec::new(),
            lanes: data.n_outputs.div_ceil(4),
            order: Vec::new(),
            values: Vec::new(),
            goes_left: Vec::new(),
            spill_order: Vec::new(),
            spill_values: Vec::new(),
            features: (0..data.n_features as u32).collect(),
            left: vec![[0.0; 4]; data.n_outputs.div_ceil(4)],
            total: vec![[0.0; 4]; data.n_outputs.div_ceil(4)],
        }
    }

    /// Draws the tree's rows and lays them out per feature in value order; returns their count.
    fn sample_rows(&mut self, rng: &mut Rng) -> usize {
        let d = self.data;
        let n = d.n;
        if d.params.bootstrap {
            self.counts.fill(0);
            for _ in 0..n {
                self.counts[rng.below(n)] += 1;
            }
        } else {
            self.counts.fill(1);
        }
        self.weight.clear();
        self.original.clear();
        self.wy.clear();
        self.wyy.clear();
        for (i, &c) in self.counts.iter().enumerate() {
            if c == 0 {
                continue;
            }
            self.compact[i] = self.weight.len() as u32;
            self.original.push(i as u32);
            let w = f64::from(c);
            let row = &d.y[i * d.n_outputs..(i + 1) * d.n_outputs];
            self.weight.push(w);
            let at = self.wy.len();
            self.wy.resize(at + self.lanes, [0.0; 4]);
            for (o, v) in row.iter().enumerate() {
                self.wy[at + o / 4][o % 4] = w * v;
            }
            self.wyy.push(w * row.iter().map(|v| v * v).sum::<f64>());
        }
        let m = self.weight.len();
        // Each feature's drawn rows in value order. Branch-free, like `partition`: every row is
        // written, and the cursor only advances past drawn ones (one spare slot for the last).
        self.order.resize(d.n_features * m + 1, 0);
        self.values.resize(d.n_features * m + 1, 0.0);
        let mut at = 0;
        for f in 0..d.n_features {
            let rows = &d.sorted[f * n..(f + 1) * n];
            for (&i, &v) in rows.iter().zip(&d.sorted_values[f * n..(f + 1) * n]) {
                let i = i as usize;
                self.order[at] = self.compact[i];
                self.values[at] = v;
                at += usize::from(self.counts[i] > 0);
            }
        }
        self.goes_left.resize(m, false);
        self.spill_order.resize(m, 0);
        self.spill_values.resize(m, 0.0);
        m
    }

    fn grow(&mut self, rng: &mut Rng) -> GrownTree {
        let m = self.sample_rows(rng);
        // the feature order is shuffled in place at every node: restart it from the same order
        // for every tree, or a tree would depend on the trees this thread grew before it
        for (i, f) in self.features.iter_mut().enumerate() {
            *f = i as u32;
        }
        let d = self.data;
        let p = d.params;
        let max_depth = p.max_depth.unwrap_or(usize::MAX);
        let k = d.n_outputs;
        let mut nodes = vec![Node::leaf(0, 0.0)];
        let (mut entries, mut own) = (Vec::new(), Vec::new());
        let mut stack = vec![Pending {
            node: 0,
            start: 0,
            end: m,
            depth: 0,
            rows_in: 0,
        }];
        let can_split = |len: usize, depth: usize| {
            depth < max_depth && len >= p.min_samples_split && len >= 2 * p.min_samples_leaf
        };
        while let Some(at) = stack.pop() {
            let w_node = self.node_totals(&at, m);
            let split = if can_split(at.end - at.start, at.depth) && !self.is_pure(&at, m, w_node) {
                self.best_split(&at, m, w_node, rng)
            } else {
                None
            };
            let Some(split) = split else {
                let rows = &self.order[at.rows_in * m + at.start..at.rows_in * m + at.end];
                // an entry is 8 bytes, a mean of its own 8 · k
                if rows.len() <= k {
                    // in the order `node_totals` summed them, so that predicting sums them alike
                    nodes[at.node] = Node::leaf(entries.len() as u32, w_node);
                    entries.extend(rows.iter().map(|&j| {
                        let row = self.original[j as usize];
                        let weight = self.counts[row as usize];
                        LeafEntry { row, weight }
                    }));
                } else {
                    nodes[at.node] = Node::leaf((own.len() / k) as u32, 0.0);
                    own.extend(self.total.as_flattened()[..k].iter().map(|t| t / w_node));
                }
                continue;
            };
            let child = nodes.len();
            nodes[at.node] = Node {
                feature: split.feature as u32,
                child: child as u32,
                value: split.threshold,
            };
            nodes.push(Node::leaf(0, 0.0));
            nodes.push(Node::leaf(0, 0.0));
            let mid = at.start + split.last_left + 1;
            if can_split(mid - at.start, at.depth + 1) || can_split(at.end - mid, at.depth + 1) {
                self.partition(split.feature, at.start, mid, at.end, m);
            }
            let (depth, rows_in) = (at.depth + 1, split.feature);
            stack.push(Pending {
                node: child + 1,
                start: mid,
                end: at.end,
                depth,
                rows_in,
            });
            stack.push(Pending {
                node: child,
                start: at.start,
                end: mid,
                depth,
                rows_in,
            });
        }
        GrownTree {
            tree: RegressionTree {
                tree: FlatTree { nodes },
                entries,
            },
            own,
        }
    }

    /// Sets `self.total` to the node's weighted output sums and returns its weight.
    fn node_totals(&mut self, at: &Pending, m: usize) -> f64 {
        let c = self.lanes;
        self.total.fill([0.0; 4]);
        let mut w = 0.0;
        for &j in &self.order[at.rows_in * m + at.start..at.rows_in * m + at.end] {
            let j = j as usize;
            w += self.weight[j];
            add_lanes(&mut self.total, &self.wy[j * c..(j + 1) * c]);
        }
        w
    }

    /// Whether the node's outputs are all equal (scikit-learn: impurity <= machine epsilon).
    fn is_pure(&self, at: &Pending, m: usize, w: f64) -> bool {
        let sq: f64 = self.order[at.rows_in * m + at.start..at.rows_in * m + at.end]
            .iter()
            .map(|&j| self.wyy[j as usize])
            .sum();
        let mean_sq: f64 = self.total.as_flattened().iter().map(|t| t * t).sum::<f64>() / w;
        let impurity = (sq - mean_sq) / w / self.data.n_outputs as f64;
        impurity <= f64::EPSILON
    }

    /// The split with the largest decrease of the summed squared error, if any is allowed.
    ///
    /// Maximises Σₒ Lₒ²/w_L + Σₒ Rₒ²/w_R (L, R: weighted output sums of each side), which differs
    /// from the squared-error decrease only by terms that are the same for every candidate.
    fn best_split(&mut self, at: &Pending, m: usize, w_node: f64, rng: &mut Rng) -> Option<Split> {
        let d = self.data;
        let c = self.lanes;
        let min_leaf = d.params.min_samples_leaf;
        let (left, total, wy, weight) = (&mut self.left, &self.total, &self.wy, &self.weight);
        let len = at.end - at.start;
        let mut best: Option<Split> = None;
        let mut best_proxy = f64::NEG_INFINITY;
        let mut visited = 0;
        for i in 0..d.n_features {
            if visited == d.max_features {
                break;
            }
            let pick = i + rng.below(d.n_features - i);
            self.features.swap(i, pick);
            let f = self.features[i] as usize;
            let values = &self.values[f * m + at.start..f * m + at.end];
            if values[len - 1] <= values[0] + FEATURE_THRESHOLD {
                continue; // constant in this node
            }
            visited += 1;
            let scan = Scan {
                order: &self.order[f * m + at.start..f * m + at.end],
                values,
                weight,
                wy,
                total,
                lanes: c,
                min_leaf,
                w_node,
            };
            if let Some((proxy, pos)) = scan.run(left, best_proxy, d.avx2) {
                best_proxy = proxy;
                let (a, b) = (values[pos], values[pos + 1]);
                let mut threshold = a / 2.0 + b / 2.0;
                if threshold == b || !threshold.is_finite() {
                    threshold = a;
                }
                best = Some(Split {
                    proxy,
                    feature: f,
                    last_left: pos,
                    threshold,
                });
            }
        }
        best.filter(|s| s.proxy.is_finite())
    }

    /// Reorders every feature's segment `start..end` so that the rows going left (those in
    /// `split_feature`'s segment before `mid`) come first, each side keeping its value order.
    fn partition(&mut self, split_feature: usize, start: usize, mid: usize, end: usize, m: usize) {
        let base = split_feature * m;
        for (p, &j) in self.order[base + start..base + end].iter().enumerate() {
            self.goes_left[j as usize] = start + p < mid;
        }
        for f in 0..self.data.n_features {
            if f == split_feature {
                continue;
            }
            let order = &mut self.order[f * m + start..f * m + end];
            let values = &mut self.values[f * m + start..f * m + end];
            // Branch-free: every row is written to both cursors and only its side's advances,
            // since which side a row goes to is as good as random.
            let (mut kept, mut spilled) = (0, 0);
            for p in 0..order.len() {
                let (j, v) = (order[p], values[p]);
                let goes_left = self.goes_left[j as usize];
                order[kept] = j;
                values[kept] = v;
                self.spill_order[spilled] = j;
                self.spill_values[spilled] = v;
                kept += usize::from(goes_left);
                spilled += usize::from(!goes_left);
            }
            order[kept..].copy_from_slice(&self.spill_order[..spilled]);
            values[kept..].copy_from_slice(&self.spill_values[..spilled]);
        }
    }
}
