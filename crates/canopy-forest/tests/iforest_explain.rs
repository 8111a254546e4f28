//! Explanations as the `:explain` endpoint serves them: per-feature contributions to a row's
//! anomaly score that are non-negative, sum to 1, and put the largest share on the feature that
//! makes the row anomalous.

use canopy_forest::iforest::{IsolationForest, IsolationForestParams};
use canopy_forest::matrix::row_major;
use canopy_forest::rng::Rng;

const N_FEATURES: usize = 5;

/// Correlated, differently scaled features, like cpu, memory, restarts, net_rx, net_tx.
fn training(rng: &mut Rng, n: usize) -> Vec<f64> {
    let scales = [1.0, 0.5, 3.0, 1e6, 8e5];
    let mut rows = Vec::with_capacity(n * N_FEATURES);
    for _ in 0..n {
        let load = rng.next_f64();
        for (f, scale) in scales.iter().enumerate() {
            let noise = rng.next_f64() - 0.5;
            rows.push(scale * (0.6 * load + 0.4 * noise + f as f64 * 0.1));
        }
    }
    rows
}

#[test]
fn a_row_anomalous_in_one_feature_is_explained_by_that_feature() {
    let mut rng = Rng::new(21);
    let data = training(&mut rng, 3_000);
    let forest = IsolationForest::fit(
        &IsolationForestParams {
            seed: 5,
            ..IsolationForestParams::default()
        },
        row_major(&data, N_FEATURES).expect("whole rows"),
    )
    .expect("fit");
    let typical: Vec<f64> = data[..N_FEATURES].to_vec();
    for feature in 0..N_FEATURES {
        // Push one feature of a typical row 1 to 8 of its ranges beyond the training maximum.
        let max = data
            .chunks_exact(N_FEATURES)
            .map(|r| r[feature])
            .fold(f64::MIN, f64::max);
        let min = data
            .chunks_exact(N_FEATURES)
            .map(|r| r[feature])
            .fold(f64::MAX, f64::min);
        for k in [1.0, 2.0, 8.0] {
            let mut row = typical.clone();
            row[feature] = max + k * (max - min);
            let score = |r: &[f64]| forest.anomaly_score(r).expect("score");
            assert!(score(&row) > score(&typical), "feature {feature} x{k}");
            let contributions = forest.explain(&row).expect("explain");
            assert_eq!(contributions.len(), N_FEATURES);
            assert!(contributions.iter().all(|&c| c >= 0.0), "{contributions:?}");
            assert!((contributions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
            let top =
                (0..N_FEATURES).max_by(|&a, &b| contributions[a].total_cmp(&contributions[b]));
            assert_eq!(
                top,
                Some(feature),
                "feature {feature} x{k}: {contributions:?}"
            );
            assert!(
                contributions[feature] > 0.5,
                "feature {feature} x{k}: {contributions:?}"
            );
        }
    }
}

#[test]
fn every_row_gets_a_distribution_over_features() {
    let mut rng = Rng::new(22);
    let data = training(&mut rng, 1_000);
    let forest = IsolationForest::fit(
        &IsolationForestParams::default(),
        row_major(&data, N_FEATURES).expect("whole rows"),
    )
    .expect("fit");
    for row in training(&mut rng, 200).chunks_exact(N_FEATURES) {
        let contributions = forest.explain(row).expect("explain");
        assert!(
            contributions.iter().all(|&c| (0.0..=1.0).contains(&c)),
            "{contributions:?}"
        );
        assert!((contributions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
    assert!(forest.explain(&[0.0; 4]).is_err());
}
