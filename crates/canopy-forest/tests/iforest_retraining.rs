//! Incremental retraining as the agent runs it: a reservoir fed through the anomaly gate, the
//! oldest trees replaced every retrain interval, each new forest published through `ArcSwap`.
//!
//! Two behaviours a user would notice: scoring never waits for training and never sees a
//! half-built forest, and after a level shift the model stops flagging everything within a
//! bounded number of retrain intervals.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use canopy_forest::iforest::{IsolationForest, IsolationForestParams};
use canopy_forest::matrix::row_major;
use canopy_forest::reservoir::{AnomalyGate, Reservoir};
use canopy_forest::rng::Rng;

const N_FEATURES: usize = 5;

/// A standard normal draw (Box–Muller) from the crate's seeded generator.
fn normal(rng: &mut Rng) -> f64 {
    let u = 1.0 - rng.next_f64();
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * rng.next_f64()).cos()
}

/// One feature vector: independent normals, the first two offset by `shift`.
fn vector(rng: &mut Rng, shift: f64) -> [f64; N_FEATURES] {
    let mut v = [0.0; N_FEATURES];
    v.iter_mut().for_each(|x| *x = normal(rng));
    v[0] += shift;
    v[1] += shift;
    v
}

#[test]
fn scoring_threads_never_wait_for_or_see_a_half_built_forest() {
    const RETRAINS: u64 = 300;
    const READERS: usize = 3;
    let params = IsolationForestParams {
        n_estimators: 100,
        seed: 1,
        ..IsolationForestParams::default()
    };
    let mut rng = Rng::new(2);
    let mut reservoir = Reservoir::new(N_FEATURES, 1_000, None).expect("reservoir");
    for t in 0..1_000 {
        reservoir.push(t, &vector(&mut rng, 0.0)).expect("push");
    }
    let first = IsolationForest::fit(
        &params,
        row_major(reservoir.rows(), N_FEATURES).expect("whole rows"),
    )
    .expect("fit");
    let probe = [0.5, -0.5, 1.0, 0.0, 2.0];

    // The writer records each generation's probe score before publishing it, so a reader can
    // tell whether the forest it loaded is exactly the one that was published.
    let expected: Arc<Vec<AtomicU64>> =
        Arc::new((0..=RETRAINS).map(|_| AtomicU64::new(0)).collect());
    let score = |f: &IsolationForest| f.score_sample(&probe).expect("score probe");
    expected[0].store(score(&first).to_bits(), Ordering::Release);
    let current = Arc::new(ArcSwap::from_pointee(first));
    let building = AtomicBool::new(false);
    let done = AtomicBool::new(false);
    let reads_while_building = AtomicUsize::new(0);

    std::thread::scope(|scope| {
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                scope.spawn(|| {
                    let (mut last_generation, mut reads, mut during_build) = (0, 0usize, 0usize);
                    let mut slowest = Duration::ZERO;
                    let rows: Vec<f64> =
                        probe.iter().cycle().take(N_FEATURES * 8).copied().collect();
                    while !done.load(Ordering::Acquire) {
                        let was_building = building.load(Ordering::Acquire);
                        let started = Instant::now();
                        let forest = current.load();
                        let s = score(&forest);
                        let rows = row_major(&rows, N_FEATURES).expect("8 rows");
                        let batch = forest.decision_function(rows).expect("decision_function");
                        slowest = slowest.max(started.elapsed());
                        let generation = forest.generation();
                        assert_eq!(forest.trees().len(), params.n_estimators);
                        assert!(forest.offset().is_finite());
                        assert!(generation >= last_generation, "generation went back");
                        let published =
                            f64::from_bits(expected[generation as usize].load(Ordering::Acquire));
                        assert_eq!(s.to_bits(), published.to_bits(), "generation {generation}");
                        assert!(batch.iter().all(|&d| d == s - forest.offset()));
                        last_generation = generation;
                        reads += 1;
                        if was_building && building.load(Ordering::Acquire) {
                            during_build += 1;
                        }
                    }
                    reads_while_building.fetch_add(during_build, Ordering::Relaxed);
                    (reads, during_build, slowest)
                })
            })
            .collect();

        let mut gate = AnomalyGate::default();
        for generation in 1..=RETRAINS {
            let model = current.load_full();
            for k in 0..50 {
                let t = (generation * 50 + k) as i64 + 1_000;
                gate.offer(&mut reservoir, &model, t, &vector(&mut rng, 0.0))
                    .expect("offer");
            }
            building.store(true, Ordering::Release);
            let training = reservoir.training_rows();
            let next = model
                .retrained(
                    row_major(&training, N_FEATURES).expect("whole rows"),
                    row_major(reservoir.rows(), N_FEATURES).expect("whole rows"),
                    0.1,
                )
                .expect("retrain");
            building.store(false, Ordering::Release);
            assert_eq!(next.generation(), generation);
            expected[generation as usize].store(score(&next).to_bits(), Ordering::Release);
            current.store(Arc::new(next));
        }
        done.store(true, Ordering::Release);
        for (i, reader) in readers.into_iter().enumerate() {
            let (reads, during_build, slowest) = reader.join().expect("reader panicked");
            println!(
                "reader {i}: {reads} reads, {during_build} while a forest was being built, slowest {slowest:?}"
            );
            assert!(
                reads > 0 && during_build > 0,
                "reader {i} made no progress while training ran"
            );
        }
    });
    assert_eq!(current.load().generation(), RETRAINS);
    assert!(reads_while_building.load(Ordering::Relaxed) > 0);
}

/// The stated bound: one reservoir turnover. The gate opens within the first interval after the
/// shift (its window is one interval), so shifted vectors reach the training rows at once; the
/// threshold settles once shifted vectors make up most of the reservoir and the trees grown since
/// (20% per retrain) outvote the old ones, which cannot take longer than replacing the whole
/// reservoir: CAPACITY / INTERVAL = 8 intervals (this seed takes 5). From then on the flagged
/// fraction stays within contamination ± 4 points.
const RECOVERY_BOUND_INTERVALS: usize = 8;

#[test]
fn flagged_fraction_recovers_within_a_bounded_number_of_retrains_after_a_level_shift() {
    const INTERVAL: usize = 256;
    const CAPACITY: usize = 8 * INTERVAL;
    const CONTAMINATION: f64 = 0.03;
    let params = IsolationForestParams {
        seed: 3,
        ..IsolationForestParams::default()
    };
    let mut rng = Rng::new(4);
    let mut reservoir = Reservoir::new(N_FEATURES, CAPACITY, None).expect("reservoir");
    for t in 0..CAPACITY {
        reservoir
            .push(t as i64, &vector(&mut rng, 0.0))
            .expect("push");
    }
    let mut model = IsolationForest::fit(
        &params,
        row_major(reservoir.rows(), N_FEATURES).expect("whole rows"),
    )
    .expect("fit");
    let mut gate = AnomalyGate::default();
    let mut t = CAPACITY as i64;
    // Per retrain interval: the fraction of that interval's vectors the live model flagged.
    let mut run = |intervals: usize, shift: f64, model: &mut IsolationForest| -> Vec<f64> {
        (0..intervals)
            .map(|_| {
                let mut flagged = 0;
                for _ in 0..INTERVAL {
                    let v = vector(&mut rng, shift);
                    if model.predict_row(&v).expect("predict") == -1 {
                        flagged += 1;
                    }
                    gate.offer(&mut reservoir, model, t, &v).expect("offer");
                    t += 1;
                }
                let training = reservoir.training_rows();
                *model = model
                    .retrained(
                        row_major(&training, N_FEATURES).expect("whole rows"),
                        row_major(reservoir.rows(), N_FEATURES).expect("whole rows"),
                        0.2,
                    )
                    .expect("retrain");
                flagged as f64 / INTERVAL as f64
            })
            .collect()
    };
    let before = run(8, 0.0, &mut model);
    let after = run(30, 4.0, &mut model);
    println!("before the shift: {before:.3?}");
    println!("after the shift:  {after:.3?}");
    let settled = |f: &f64| (*f - CONTAMINATION).abs() <= 0.04;
    assert!(
        before.iter().all(settled),
        "flagged fraction off before the shift"
    );
    assert!(after[0] > 0.5, "the shift was not noticed: {:.3}", after[0]);
    // The first interval from which every later one is settled.
    let recovered = after.iter().rposition(|f| !settled(f)).map_or(0, |i| i + 1);
    println!("recovered after {recovered} retrain intervals (bound {RECOVERY_BOUND_INTERVALS})");
    assert!(
        recovered <= RECOVERY_BOUND_INTERVALS,
        "still off after {recovered} intervals: {after:.3?}"
    );
}
