use ndarray::ArrayView2;

use super::build::{TreeGrower, percentile_linear};
use super::*;
use crate::matrix::row_major;
use crate::rng::Rng;

/// Row-major `data` of `width` columns as the forests' matrix.
fn rows_of(data: &[f64], width: usize) -> ArrayView2<'_, f64> {
    row_major(data, width).expect("whole rows")
}

fn params(seed: u64) -> IsolationForestParams {
    IsolationForestParams {
        seed,
        ..IsolationForestParams::default()
    }
}

/// 500 rows of 3 features, normal-ish from the seeded generator, plus one far outlier last.
fn sample_data() -> Vec<f64> {
    let mut rng = Rng::new(11);
    let mut data: Vec<f64> = (0..500 * 3)
        .map(|_| (0..6).map(|_| rng.next_f64()).sum::<f64>() - 3.0)
        .collect();
    data.extend([8.0, -8.0, 8.0]);
    data
}

#[test]
fn average_path_length_matches_the_formula() {
    assert_eq!(average_path_length(0), 0.0);
    assert_eq!(average_path_length(1), 0.0);
    assert_eq!(average_path_length(2), 1.0);
    // Independently: c(n) = 2·H(n−1) − 2(n−1)/n with H(i) ≈ ln(i) + γ, γ written out in full.
    let n = 256.0_f64;
    let expected = 2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n;
    assert!((average_path_length(256) - expected).abs() < 1e-12);
    // c(3) = 2(ln 2 + γ) − 4/3.
    let c3 = 2.0 * (2.0_f64.ln() + 0.577_215_664_901_532_9) - 4.0 / 3.0;
    assert!((average_path_length(3) - c3).abs() < 1e-12);
    // The exact harmonic form agrees to the asymptotic error at large n: a sanity check
    // that the formula was transcribed with ln(n − 1), not ln(n).
    let harmonic: f64 = (1..1_000_000).map(|i| 1.0 / i as f64).sum();
    let exact = 2.0 * harmonic - 2.0 * 999_999.0 / 1_000_000.0;
    assert!((average_path_length(1_000_000) - exact).abs() < 1e-5);
}

/// A forest from hand-built trees, for checking scoring arithmetic without growing.
fn hand_forest(
    trees: Vec<IsolationTree>,
    contamination: Contamination,
    offset_data: &[f64],
) -> IsolationForest {
    let n = trees.len();
    IsolationForest::assemble(
        IsolationForestParams {
            n_estimators: n,
            contamination,
            ..IsolationForestParams::default()
        },
        1,
        trees,
        0,
        n as u64,
        offset_data,
    )
}

/// Grown on ψ = 4 rows {0, 1, 2, 3}: root splits at 0.5 (1 row left), right at 2.5
/// (2 rows left: depth 2 + c(2); 1 row right: depth 2 + c(1)).
fn hand_tree() -> IsolationTree {
    IsolationTree::new(
        vec![
            Node {
                feature: 0,
                child: 1,
                value: 0.5,
            },
            Node::leaf(0, 1.0 + average_path_length(1)),
            Node {
                feature: 0,
                child: 3,
                value: 2.5,
            },
            Node::leaf(0, 2.0 + average_path_length(2)),
            Node::leaf(0, 2.0 + average_path_length(1)),
        ],
        vec![4, 1, 3, 2, 1],
        4,
        0,
    )
}

#[test]
fn scores_follow_path_lengths_on_a_hand_built_forest() {
    let data = [0.0, 1.0, 2.0, 3.0];
    let forest = hand_forest(vec![hand_tree()], Contamination::Auto, &data);
    let c4 = average_path_length(4);
    let expected_paths = [1.0, 3.0, 3.0, 2.0];
    for (x, path) in data.iter().zip(expected_paths) {
        let s = 2f64.powf(-path / c4);
        assert!((forest.score_sample(&[*x]).unwrap() + s).abs() < 1e-15);
        assert!((forest.anomaly_score(&[*x]).unwrap() - s).abs() < 1e-15);
    }
    assert_eq!(forest.offset(), -0.5);
    // Two copies of the tree average to the same scores.
    let twice = hand_forest(vec![hand_tree(), hand_tree()], Contamination::Auto, &data);
    assert_eq!(
        twice.score_samples(rows_of(&data, 1)).unwrap(),
        forest.score_samples(rows_of(&data, 1)).unwrap()
    );
}

#[test]
fn offset_is_numpys_linear_percentile_of_training_scores() {
    let data = [0.0, 1.0, 2.0, 3.0];
    let forest = hand_forest(vec![hand_tree()], Contamination::Fraction(0.5), &data);
    // Sorted scores −2^(−1/c4) < −2^(−2/c4) < −2^(−3/c4) = −2^(−3/c4); the 50th percentile of
    // four values sits halfway between the second and third.
    let c4 = average_path_length(4);
    let s = |p: f64| -(2f64.powf(-p / c4));
    let expected = 0.5 * (s(2.0) + s(3.0));
    assert!(
        (forest.offset() - expected).abs() < 1e-15,
        "{}",
        forest.offset()
    );
    // decision_function < 0 exactly for the two rows below the median.
    assert_eq!(
        forest.predict(rows_of(&data, 1)).unwrap().to_vec(),
        [-1, 1, 1, -1]
    );

    let mut v = [5.0, 1.0, 3.0, 2.0, 4.0];
    assert!((percentile_linear(&mut v, 3.0) - (1.0 + 0.03 * 4.0)).abs() < 1e-12);
    assert_eq!(percentile_linear(&mut v, 100.0), 5.0);
    assert_eq!(percentile_linear(&mut v, 0.0), 1.0);
}

#[test]
fn grown_trees_respect_depth_limit_and_leaf_values() {
    let data = sample_data();
    let forest = IsolationForest::fit(&params(1), rows_of(&data, 3)).unwrap();
    assert_eq!(forest.trees().len(), 100);
    for tree in forest.trees() {
        assert_eq!(tree.psi(), 256);
        let nodes = tree.nodes();
        // Every leaf's value is depth + c(size); the leaves' sizes add up to ψ.
        let mut stack = vec![(0usize, 0usize)];
        let mut rows = 0;
        while let Some((i, depth)) = stack.pop() {
            assert!(depth <= 8);
            if nodes[i].is_leaf() {
                let size = tree.sizes[i] as usize;
                rows += size;
                assert_eq!(nodes[i].value, depth as f64 + average_path_length(size));
                assert!(
                    size == 1 || depth == 8,
                    "leaf of {size} rows at depth {depth}"
                );
            } else {
                let c = nodes[i].child as usize;
                assert_eq!(tree.sizes[i], tree.sizes[c] + tree.sizes[c + 1]);
                stack.extend([(c, depth + 1), (c + 1, depth + 1)]);
            }
        }
        assert_eq!(rows, 256);
    }
    // The branch-free descent ends on the same leaf as the flat tree's own.
    for tree in forest.trees() {
        for row in data.chunks_exact(3) {
            assert_eq!(tree.path_length(row), tree.tree.leaf(row).value);
        }
    }
    // The outlier is the most anomalous row, and it is flagged.
    let scores = forest.score_samples(rows_of(&data, 3)).unwrap();
    let worst = (0..scores.len()).min_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    assert_eq!(worst, Some(500));
    assert_eq!(forest.predict_row(&[8.0, -8.0, 8.0]).unwrap(), -1);
    // About 3% of the training rows fall below the offset.
    let flagged = forest
        .predict(rows_of(&data, 3))
        .unwrap()
        .iter()
        .filter(|&&p| p == -1)
        .count();
    assert!((14..=17).contains(&flagged), "{flagged}");
}

#[test]
fn same_seed_gives_identical_forests_and_another_seed_does_not() {
    let data = sample_data();
    let a = IsolationForest::fit(&params(7), rows_of(&data, 3)).unwrap();
    let b = IsolationForest::fit(&params(7), rows_of(&data, 3)).unwrap();
    let c = IsolationForest::fit(&params(8), rows_of(&data, 3)).unwrap();
    assert_eq!(a, b);
    assert_ne!(a.trees()[0], c.trees()[0]);
    // Tree k depends on nothing but fork k of the seed, whatever was grown before it.
    let alone = TreeGrower::new(501, 3, 256, 1.0).grow(&data, &mut Rng::new(7).fork(57), 0);
    assert_eq!(alone, a.trees()[57]);
}

#[test]
fn single_row_batch_and_unchecked_paths_agree() {
    let data = sample_data();
    let forest = IsolationForest::fit(&params(3), rows_of(&data, 3)).unwrap();
    let batch = forest.score_samples(rows_of(&data, 3)).unwrap();
    let decisions = forest.decision_function(rows_of(&data, 3)).unwrap();
    let anomaly = forest.anomaly_scores(rows_of(&data, 3)).unwrap();
    for (i, row) in data.chunks_exact(3).enumerate() {
        let single = forest.score_sample(row).unwrap();
        assert!((single - batch[i]).abs() < 1e-15);
        assert_eq!(decisions[i], batch[i] - forest.offset());
        assert_eq!(anomaly[i], -batch[i]);
    }
}

#[test]
fn retraining_replaces_the_oldest_trees_and_keeps_the_rest() {
    let data = sample_data();
    let forest = IsolationForest::fit(&params(5), rows_of(&data, 3)).unwrap();
    let shifted: Vec<f64> = data.iter().map(|v| v + 10.0).collect();
    let next = forest
        .retrained(rows_of(&shifted, 3), rows_of(&shifted, 3), 0.25)
        .unwrap();
    assert_eq!(next.generation(), 1);
    assert_eq!(next.trees().len(), 100);
    assert_eq!(&next.trees()[..75], &forest.trees()[25..]);
    assert!(next.trees()[75..].iter().all(|t| t.generation() == 1));
    // The offset was re-estimated on the new set: ~3% of it is flagged again.
    let flagged = next
        .predict(rows_of(&shifted, 3))
        .unwrap()
        .iter()
        .filter(|&&p| p == -1)
        .count();
    assert!((14..=17).contains(&flagged), "{flagged}");
    // Retraining is deterministic too, and the old forest is untouched.
    assert_eq!(
        next,
        forest
            .retrained(rows_of(&shifted, 3), rows_of(&shifted, 3), 0.25)
            .unwrap()
    );
    assert_eq!(forest.generation(), 0);
    // A full replacement leaves no tree of generation 0.
    let full = forest
        .retrained(rows_of(&shifted, 3), rows_of(&shifted, 3), 1.0)
        .unwrap();
    assert!(full.trees().iter().all(|t| t.generation() == 1));
}

#[test]
fn single_row_training_scores_one_half_like_scikit_learn() {
    let forest = IsolationForest::fit(&params(0), rows_of(&[1.0, 2.0], 2)).unwrap();
    assert_eq!(forest.score_sample(&[5.0, 5.0]).unwrap(), -0.5);
}

#[test]
fn bad_input_gives_errors_that_name_the_problem() {
    use IsolationForestError as E;
    let data = sample_data();
    let p = |f: fn(&mut IsolationForestParams)| {
        let mut p = params(0);
        f(&mut p);
        p
    };
    let fit = |p: &IsolationForestParams| IsolationForest::fit(p, rows_of(&data, 3)).err();
    assert_eq!(fit(&p(|p| p.n_estimators = 0)), Some(E::NoEstimators));
    assert_eq!(fit(&p(|p| p.max_samples = 0)), Some(E::NoMaxSamples));
    assert_eq!(
        fit(&p(|p| p.max_features = 0.0)),
        Some(E::BadMaxFeatures(0.0))
    );
    assert_eq!(
        fit(&p(|p| p.max_features = 1.5)),
        Some(E::BadMaxFeatures(1.5))
    );
    assert_eq!(
        fit(&p(|p| p.contamination = Contamination::Fraction(0.6))),
        Some(E::BadContamination(0.6))
    );
    assert!(matches!(
        fit(&p(|p| p.contamination = Contamination::Fraction(f64::NAN))),
        Some(E::BadContamination(_))
    ));
    let ok = params(0);
    assert_eq!(
        IsolationForest::fit(&ok, rows_of(&[], 3)).err(),
        Some(E::EmptyData)
    );
    let no_columns = ArrayView2::from_shape((4, 0), &data[..0]).expect("4 rows of nothing");
    assert_eq!(
        IsolationForest::fit(&ok, no_columns).err(),
        Some(E::NoFeatures)
    );
    let mut bad = data.clone();
    bad[7] = f64::INFINITY;
    assert_eq!(
        IsolationForest::fit(&ok, rows_of(&bad, 3)).err(),
        Some(E::NonFinite {
            row: 2,
            feature: 1,
            value: f64::INFINITY
        })
    );
    let forest = IsolationForest::fit(&ok, rows_of(&data, 3)).unwrap();
    assert_eq!(
        forest.score_sample(&[1.0, 2.0]).err(),
        Some(E::FeatureCount {
            expected: 3,
            found: 2
        })
    );
    assert!(matches!(
        forest
            .predict(rows_of(&[0.0, 0.0, 0.0, 1.0, f64::NAN, 0.0], 3))
            .err(),
        Some(E::NonFinite {
            row: 1,
            feature: 1,
            ..
        })
    ));
    assert_eq!(
        forest.explain(&[0.0]).err(),
        Some(E::FeatureCount {
            expected: 3,
            found: 1
        })
    );
    assert_eq!(
        forest
            .retrained(rows_of(&data, 3), rows_of(&data, 3), 0.0)
            .err(),
        Some(E::BadReplaceFraction(0.0))
    );
    assert_eq!(
        forest
            .retrained(rows_of(&data[..2], 2), rows_of(&data, 3), 0.5)
            .err(),
        Some(E::FeatureCount {
            expected: 3,
            found: 2
        })
    );
    assert!(
        E::NonFinite {
            row: 2,
            feature: 1,
            value: f64::NAN
        }
        .to_string()
        .contains("finite")
    );
}

#[test]
fn max_features_limits_each_tree_to_a_subset() {
    let data = sample_data();
    let p = IsolationForestParams {
        max_features: 0.4,
        ..params(2)
    };
    let forest = IsolationForest::fit(&p, rows_of(&data, 3)).unwrap();
    // ⌊0.4 · 3⌋ = 1 feature per tree, and across trees all three are used.
    let mut used = [false; 3];
    for tree in forest.trees() {
        let mut features: Vec<u32> = tree
            .nodes()
            .iter()
            .filter(|n| !n.is_leaf())
            .map(|n| n.feature)
            .collect();
        features.sort_unstable();
        features.dedup();
        assert_eq!(features.len(), 1);
        used[features[0] as usize] = true;
    }
    assert_eq!(used, [true; 3]);
}

#[test]
fn constant_features_are_never_split_on() {
    let mut rng = Rng::new(4);
    let data: Vec<f64> = (0..300).flat_map(|_| [rng.next_f64(), 7.0]).collect();
    let forest = IsolationForest::fit(&params(0), rows_of(&data, 2)).unwrap();
    assert!(
        forest
            .trees()
            .iter()
            .all(|t| t.nodes().iter().all(|n| n.is_leaf() || n.feature == 0))
    );
    // All-constant data makes single-leaf trees holding ψ rows.
    let flat = vec![1.0; 40];
    let forest = IsolationForest::fit(&params(0), rows_of(&flat, 2)).unwrap();
    assert!(forest.trees().iter().all(|t| t.nodes().len() == 1));
    assert!((forest.score_sample(&[1.0, 1.0]).unwrap() + 0.5).abs() < 1e-12);
}

#[test]
fn explanations_sum_to_one_and_point_at_the_odd_feature() {
    let data = sample_data();
    let forest = IsolationForest::fit(&params(9), rows_of(&data, 3)).unwrap();
    for feature in 0..3 {
        let mut row = [0.0; 3];
        row[feature] = 6.0;
        let contributions = forest.explain(&row).unwrap();
        assert!((contributions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(contributions.iter().all(|&c| c >= 0.0));
        let top = (0..3).max_by(|&a, &b| contributions[a].total_cmp(&contributions[b]));
        assert_eq!(top, Some(feature), "{contributions:?}");
    }
}

fn parts_of(forest: &IsolationForest) -> Vec<IsolationTreeParts> {
    forest
        .trees()
        .iter()
        .map(|t| IsolationTreeParts {
            nodes: t.nodes().to_vec(),
            sizes: t.sizes().to_vec(),
            psi: t.psi(),
            generation: t.generation(),
        })
        .collect()
}

#[test]
fn a_forest_rebuilt_from_its_parts_is_the_same_forest_and_retrains_the_same() {
    let data = sample_data();
    let forest = IsolationForest::fit(&params(3), rows_of(&data, 3)).unwrap();
    let forest = forest
        .retrained(rows_of(&data[..900], 3), rows_of(&data, 3), 0.2)
        .unwrap();
    let rebuilt = IsolationForest::from_parts(
        forest.params().clone(),
        3,
        parts_of(&forest),
        forest.offset(),
        forest.generation(),
        forest.trees_grown(),
    )
    .unwrap();
    assert_eq!(rebuilt, forest);
    assert_eq!(
        rebuilt
            .retrained(rows_of(&data, 3), rows_of(&data, 3), 0.1)
            .unwrap(),
        forest
            .retrained(rows_of(&data, 3), rows_of(&data, 3), 0.1)
            .unwrap()
    );
}

#[test]
fn corrupt_parts_are_refused_never_a_panic() {
    let forest = IsolationForest::fit(&params(3), rows_of(&sample_data(), 3)).unwrap();
    let rebuild = |parts: Vec<IsolationTreeParts>| {
        IsolationForest::from_parts(forest.params().clone(), 3, parts, -0.5, 0, 100)
    };
    let split = |parts: &[IsolationTreeParts]| {
        parts[0]
            .nodes
            .iter()
            .position(|n| !n.is_leaf())
            .expect("a split")
    };
    let mut cases: Vec<(&str, Vec<IsolationTreeParts>)> = Vec::new();
    let mut p = parts_of(&forest);
    let i = split(&p);
    p[0].nodes[i].feature = 3;
    cases.push(("feature out of range", p));
    let mut p = parts_of(&forest);
    let i = split(&p);
    p[0].nodes[i].child = i as u32;
    cases.push(("child before its parent", p));
    let mut p = parts_of(&forest);
    let n = p[0].nodes.len();
    p[0].nodes[0].child = (n - 1) as u32;
    cases.push(("child pair past the end", p));
    let mut p = parts_of(&forest);
    p[0].nodes.truncate(1);
    p[0].nodes[0].feature = 0;
    p[0].nodes[0].child = 5;
    cases.push(("truncated nodes", p));
    let mut p = parts_of(&forest);
    p[0].sizes.pop();
    cases.push(("sizes not parallel", p));
    let mut p = parts_of(&forest);
    p[0].psi = 0;
    cases.push(("no rows", p));
    let mut p = parts_of(&forest);
    let leaf = p[0].nodes.iter().position(|n| n.is_leaf()).expect("leaf");
    p[0].nodes[leaf].value = f64::NAN;
    cases.push(("non-finite leaf", p));
    let mut p = parts_of(&forest);
    p[0].nodes.push(Node::leaf(0, 1.0));
    p[0].sizes.push(0);
    cases.push(("orphan node", p));
    cases.push(("no trees", Vec::new()));
    for (what, parts) in cases {
        assert!(rebuild(parts).is_err(), "{what} accepted");
    }
    assert!(
        IsolationForest::from_parts(
            forest.params().clone(),
            3,
            parts_of(&forest),
            f64::NAN,
            0,
            0
        )
        .is_err()
    );
}
