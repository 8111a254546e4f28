use std::num::NonZeroUsize;

use ndarray::ArrayView2;

use super::scan::Avx2;
use super::*;
use crate::matrix::row_major;
use crate::rng::Rng;

/// Row-major `data` of `width` columns as the forests' matrix.
fn rows_of(data: &[f64], width: usize) -> ArrayView2<'_, f64> {
    row_major(data, width).expect("whole rows")
}

fn params(n_estimators: usize, seed: u64) -> RandomForestParams {
    RandomForestParams {
        n_estimators,
        seed,
        ..RandomForestParams::default()
    }
}

/// n rows of 3 features in [0, 1) and 2 outputs: y₀ = step(x₀ > 0.5), y₁ = x₁ + noise.
fn toy(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let mut rng = Rng::new(seed);
    let mut x = Vec::new();
    let mut y = Vec::new();
    for _ in 0..n {
        let row = [rng.next_f64(), rng.next_f64(), rng.next_f64()];
        x.extend_from_slice(&row);
        y.push(if row[0] > 0.5 { 10.0 } else { 0.0 });
        y.push(row[1] + 0.01 * rng.next_f64());
    }
    (x, y)
}

fn depth(tree: &FlatTree, i: usize) -> usize {
    let n = &tree.nodes[i];
    if n.is_leaf() {
        0
    } else {
        1 + depth(tree, n.child as usize).max(depth(tree, n.child as usize + 1))
    }
}

#[test]
fn same_seed_same_model_on_any_thread_count() {
    let (x, y) = toy(300, 1);
    // one feature drawn per node, so that every draw of the tree's generator shows
    let p = RandomForestParams {
        max_features: 0.4,
        ..params(8, 42)
    };
    let one = NonZeroUsize::MIN;
    let three = NonZeroUsize::new(3).unwrap();
    let a =
        RandomForestRegressor::fit_with_threads(&p, rows_of(&x, 3), rows_of(&y, 2), one).unwrap();
    let b =
        RandomForestRegressor::fit_with_threads(&p, rows_of(&x, 3), rows_of(&y, 2), three).unwrap();
    assert!(a == b, "1 and 3 threads grew different forests");
    let other_seed = RandomForestParams {
        seed: 43,
        ..p.clone()
    };
    let c =
        RandomForestRegressor::fit_with_threads(&other_seed, rows_of(&x, 3), rows_of(&y, 2), three)
            .unwrap();
    assert!(a != c, "another seed must give another forest");
}

#[test]
fn every_split_scan_variant_grows_the_same_trees() {
    // 1, 2 and 3 lanes, and 5 (the variant for any lane count), with and without AVX2
    for n_outputs in [1, 7, 12, 17] {
        let mut rng = Rng::new(n_outputs as u64);
        let x: Vec<f64> = (0..400 * 4).map(|_| rng.next_f64()).collect();
        let y: Vec<f64> = (0..400 * n_outputs)
            .map(|i| x[(i / n_outputs) * 4 + i % 4] * (i % n_outputs) as f64 + rng.next_f64())
            .collect();
        let p = params(3, 9);
        let fit = |avx2| {
            RandomForestRegressor::fit_impl(&p, &x, 4, &y, n_outputs, NonZeroUsize::MIN, avx2)
                .unwrap()
        };
        let portable = fit(None);
        assert!(portable.trees().iter().all(|t| t.tree.nodes.len() > 20));
        assert!(
            portable == fit(Avx2::detect()),
            "{n_outputs} outputs: variants differ"
        );
    }
}

#[test]
fn the_hand_computed_best_split_is_found() {
    // Rows (x₀, x₁) → y: (0,5)→0 (1,1)→1 (2,4)→0 (3,0)→9 (4,3)→8 (5,2)→10.
    // Splitting x₀ at 2.5 leaves {0,1,0} (mean 1/3, squared error 2/3) and {9,8,10} (mean 9,
    // squared error 2): 8/3 in all, less than any other cut of x₀ or any cut of x₁ (the best,
    // x₁ at 3.5, leaves 50 on its left alone), so the root must split x₀ at the midpoint 2.5.
    let x = [0.0, 5.0, 1.0, 1.0, 2.0, 4.0, 3.0, 0.0, 4.0, 3.0, 5.0, 2.0];
    let y = [0.0, 1.0, 0.0, 9.0, 8.0, 10.0];
    let p = RandomForestParams {
        n_estimators: 1,
        bootstrap: false,
        min_samples_split: 2,
        min_samples_leaf: 1,
        max_depth: Some(1),
        ..RandomForestParams::default()
    };
    let f = RandomForestRegressor::fit(&p, rows_of(&x, 2), rows_of(&y, 1)).unwrap();
    let root = f.trees()[0].tree.nodes[0];
    assert_eq!((root.feature, root.value), (0, 2.5));
    let mut out = [0.0];
    f.predict_row(&[1.0, 0.0], &mut out).unwrap();
    assert!((out[0] - 1.0 / 3.0).abs() < 1e-12);
    f.predict_row(&[4.0, 0.0], &mut out).unwrap();
    assert_eq!(out[0], 9.0);
}

#[test]
fn the_split_minimises_error_summed_over_outputs() {
    // y₀ = x₀ and y₁ = 10·x₁: splitting x₀ removes y₀'s squared error (1), splitting x₁
    // removes y₁'s (100). Summed over outputs x₁ wins, as in scikit-learn's criterion.
    let x = [0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0];
    let y = [0.0, 0.0, 0.0, 10.0, 1.0, 0.0, 1.0, 10.0];
    let p = RandomForestParams {
        n_estimators: 1,
        bootstrap: false,
        min_samples_split: 2,
        min_samples_leaf: 1,
        max_depth: Some(1),
        ..RandomForestParams::default()
    };
    let f = RandomForestRegressor::fit(&p, rows_of(&x, 2), rows_of(&y, 2)).unwrap();
    assert_eq!(f.trees()[0].tree.nodes[0].feature, 1);
    let mut out = [0.0; 2];
    f.predict_row(&[0.0, 1.0], &mut out).unwrap();
    assert_eq!(out, [0.5, 10.0]);
}

#[test]
fn limits_on_depth_and_leaf_and_split_sizes_hold() {
    let (x, y) = toy(500, 2);
    let p = RandomForestParams {
        n_estimators: 4,
        max_depth: Some(5),
        min_samples_split: 20,
        min_samples_leaf: 7,
        bootstrap: false,
        ..RandomForestParams::default()
    };
    let f = RandomForestRegressor::fit(&p, rows_of(&x, 3), rows_of(&y, 2)).unwrap();
    for t in f.trees() {
        assert!(depth(&t.tree, 0) <= 5);
        assert!(depth(&t.tree, 0) >= 3, "500 rows should grow past depth 2");
        // without bootstrap every row is in the tree once: count the rows reaching each leaf
        let mut rows_per_leaf = vec![0usize; t.tree.nodes.len()];
        for row in x.chunks_exact(3) {
            rows_per_leaf[leaf_index(&t.tree, row)] += 1;
        }
        for (i, node) in t.tree.nodes.iter().enumerate() {
            if node.is_leaf() {
                assert!(
                    rows_per_leaf[i] >= 7,
                    "leaf {i} has {} rows",
                    rows_per_leaf[i]
                );
            }
        }
    }
    // a node smaller than min_samples_split is never split, even when a split is possible
    let p = RandomForestParams {
        min_samples_split: 501,
        ..p
    };
    let f = RandomForestRegressor::fit(&p, rows_of(&x, 3), rows_of(&y, 2)).unwrap();
    assert!(f.trees().iter().all(|t| t.tree.nodes.len() == 1));
}

#[test]
fn learns_the_step_and_the_ramp() {
    let (x, y) = toy(2000, 3);
    let f = RandomForestRegressor::fit(&params(20, 5), rows_of(&x, 3), rows_of(&y, 2)).unwrap();
    let (xt, yt) = toy(500, 4);
    let pred = f.predict(rows_of(&xt, 3)).unwrap();
    let mae: Vec<f64> = (0..2)
        .map(|o| {
            pred.iter()
                .zip(&yt)
                .skip(o)
                .step_by(2)
                .map(|(p, t)| (p - t).abs())
                .sum::<f64>()
                / 500.0
        })
        .collect();
    assert!(mae[0] < 0.2, "step output MAE {}", mae[0]);
    assert!(mae[1] < 0.02, "ramp output MAE {}", mae[1]);
}

#[test]
fn shape_and_value_errors_say_what_is_wrong() {
    let (x, y) = toy(50, 6);
    let p = params(2, 0);
    let f = RandomForestRegressor::fit(&p, rows_of(&x, 3), rows_of(&y, 2)).unwrap();
    let mut out = [0.0; 2];
    let e = f.predict_row(&[1.0; 7], &mut out).unwrap_err();
    assert_eq!(e.to_string(), "expected 3 features, got 7");
    let e = f.predict_row(&[1.0; 3], &mut [0.0; 3]).unwrap_err();
    assert_eq!(e.to_string(), "expected 2 outputs, got 3");
    let e = f.predict_row(&[1.0, f64::NAN, 0.0], &mut out).unwrap_err();
    assert_eq!(
        e.to_string(),
        "x row 0 column 1 is NaN: only finite values can be used"
    );
    assert!(matches!(
        f.predict(rows_of(&[1.0; 10], 5)),
        Err(RandomForestError::FeatureCount {
            expected: 3,
            got: 5
        })
    ));
    let fit = |x: &[f64], y: &[f64]| RandomForestRegressor::fit(&p, rows_of(x, 3), rows_of(y, 2));
    assert_eq!(fit(&[], &[]).unwrap_err(), RandomForestError::Empty);
    assert_eq!(
        fit(&x, &y[..98]).unwrap_err().to_string(),
        "x has 50 rows but y has 49: every input row needs its output row"
    );
    let mut bad = x.clone();
    bad[3 * 4 + 2] = f64::INFINITY;
    assert_eq!(
        fit(&bad, &y).unwrap_err().to_string(),
        "x row 4 column 2 is inf: only finite values can be used"
    );
    let bad_params = RandomForestParams {
        max_features: 0.0,
        ..p.clone()
    };
    assert!(matches!(
        RandomForestRegressor::fit(&bad_params, rows_of(&x, 3), rows_of(&y, 2)),
        Err(RandomForestError::BadParam(_))
    ));
}

#[test]
fn from_parts_rejects_trees_that_would_index_out_of_bounds() {
    let (x, y) = toy12(300, 7);
    let f = RandomForestRegressor::fit(&params(10, 0), rows_of(&x, 3), rows_of(&y, 12)).unwrap();
    let rebuild = |targets: Vec<f64>, trees: Vec<RegressionTree>| {
        RandomForestRegressor::from_parts(f.params().clone(), 3, 12, targets, trees)
    };
    let t = || f.targets().to_vec();
    assert_eq!(rebuild(t(), f.trees().to_vec()).unwrap(), f);
    // each way a leaf can be wrong, named in the error
    type Spoil = fn(&mut RegressionTree, usize, usize);
    let cases: [(&str, Spoil); 7] = [
        ("entries cut short", |t, _, e| t.entries.truncate(e + 1)),
        ("entry past the table", |t, _, e| {
            t.entries[e].row = u32::MAX
        }),
        ("zero weight", |t, _, e| t.entries[e].weight = 0),
        ("leaf past the entries", |t, l, _| {
            t.tree.nodes[l].child = u32::MAX
        }),
        ("fractional weight", |t, l, _| t.tree.nodes[l].value += 0.5),
        ("weights past the leaf's", |t, _, e| {
            t.entries[e].weight = u32::MAX
        }),
        ("mean past the table", |t, l, _| {
            t.tree.nodes[l] = Node::leaf(u32::MAX, 0.0);
        }),
    ];
    for (what, spoil) in cases {
        let mut trees = f.trees().to_vec();
        let tree = &trees[1];
        let leaf = (tree.tree.nodes.iter())
            .position(|n| n.is_leaf() && tree.leaf_entries(n).len() >= 2)
            .expect("a leaf of two entries");
        let first = tree.tree.nodes[leaf].child as usize;
        spoil(&mut trees[1], leaf, first);
        match rebuild(t(), trees) {
            Err(RandomForestError::BadTree { tree: 1, reason }) => {
                assert!(reason.starts_with("leaf node"), "{what}: {reason}")
            }
            other => panic!("{what}: {:?}", other.map(|_| "accepted")),
        }
    }
    let mut short = t();
    short.truncate(short.len() - 12);
    assert!(matches!(
        rebuild(short, f.trees().to_vec()),
        Err(RandomForestError::BadTree { .. })
    ));
    assert!(matches!(
        rebuild(vec![0.0; 13], f.trees().to_vec()),
        Err(RandomForestError::Ragged { .. })
    ));
    assert!(matches!(
        RandomForestRegressor::from_parts(f.params().clone(), 2, 12, t(), f.trees().to_vec()),
        Err(RandomForestError::BadTree { tree: 0, .. })
    ));
}

/// `toy`'s rows with 12 outputs (each of `toy`'s two, shifted by 0..6), as a forecast has.
fn toy12(n: usize, seed: u64) -> (Vec<f64>, Vec<f64>) {
    let (x, y) = toy(n, seed);
    let y = y
        .chunks_exact(2)
        .flat_map(|r| (0..12).map(move |o| r[o % 2] + (o / 2) as f64))
        .collect();
    (x, y)
}

/// The index of the leaf `x` falls into.
fn leaf_index(tree: &FlatTree, x: &[f64]) -> usize {
    let mut i = 0;
    while !tree.nodes[i].is_leaf() {
        let n = &tree.nodes[i];
        i = n.child as usize + usize::from(x[n.feature as usize] > n.value);
    }
    i
}

#[test]
fn a_leaf_is_the_weighted_mean_of_the_bootstrap_rows_that_reach_it() {
    // Independently of the entries: redraw each tree's bootstrap counts, route every drawn
    // training row to its leaf, and compare the weighted mean of their outputs.
    let (x, y) = toy12(400, 8);
    let p = params(20, 3);
    let f = RandomForestRegressor::fit(&p, rows_of(&x, 3), rows_of(&y, 12)).unwrap();
    let root = Rng::new(p.seed);
    let mut shared = 0;
    for (i, t) in f.trees().iter().enumerate() {
        let mut rng = root.fork(i as u64);
        let mut counts = vec![0u32; 400];
        for _ in 0..400 {
            counts[rng.below(400)] += 1;
        }
        let mut sums = vec![[0.0f64; 13]; t.tree.nodes.len()];
        for (r, row) in x
            .chunks_exact(3)
            .enumerate()
            .filter(|(r, _)| counts[*r] > 0)
        {
            let s = &mut sums[leaf_index(&t.tree, row)];
            let w = f64::from(counts[r]);
            for o in 0..12 {
                s[o] += w * y[12 * r + o];
            }
            s[12] += w;
        }
        for (n, node) in t.tree.nodes.iter().enumerate().filter(|(_, n)| n.is_leaf()) {
            if node.value != 0.0 {
                // names its rows: its weight is their bootstrap count
                assert_eq!(node.value, sums[n][12], "tree {i} leaf {n}");
                assert!(t.leaf_entries(node).len() <= 12);
                shared += 1;
            }
            let mut value = [0.0; 12];
            f.add_leaf_value(t, node, &mut value);
            for o in 0..12 {
                let want = sums[n][o] / sums[n][12];
                assert!(
                    (value[o] - want).abs() <= 1e-12 * want.abs().max(1.0),
                    "tree {i} leaf {n} output {o}: {} against {want}",
                    value[o]
                );
            }
        }
    }
    assert!(shared > 500, "only {shared} leaves name their rows");
}

#[test]
fn the_forest_never_takes_more_bytes_than_stored_means() {
    let means_bytes = |f: &RandomForestRegressor| -> usize {
        let trees = f.trees().iter();
        let nodes: usize = trees.clone().map(|t| t.tree.nodes.len()).sum();
        let leaves = trees
            .flat_map(|t| &t.tree.nodes)
            .filter(|n| n.is_leaf())
            .count();
        nodes * std::mem::size_of::<Node>() + leaves * f.n_outputs() * 8
    };
    let (x, y) = toy12(600, 9);
    // many trees of 12 outputs: leaves name their rows, for well under the means' bytes
    let f = RandomForestRegressor::fit(&params(30, 1), rows_of(&x, 3), rows_of(&y, 12)).unwrap();
    assert!(f.heap_bytes() * 10 < means_bytes(&f) * 6);
    // one tree: few leaves share a row, so naming rows would cost more than the means
    let f = RandomForestRegressor::fit(&params(1, 1), rows_of(&x, 3), rows_of(&y, 12)).unwrap();
    assert!(f.trees()[0].entries.is_empty());
    assert_eq!(f.heap_bytes(), means_bytes(&f));
    // one output: only a leaf of one row can name it, for as many bytes as its mean
    let y0: Vec<f64> = y.iter().step_by(12).copied().collect();
    let f = RandomForestRegressor::fit(&params(30, 1), rows_of(&x, 3), rows_of(&y0, 1)).unwrap();
    assert!(f.heap_bytes() <= means_bytes(&f));
}
