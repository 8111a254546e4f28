//! The isolation forest's training set for incremental retraining: a bounded buffer of recent
//! feature vectors, and the gate that keeps anomalous vectors out of it.
//!
//! [`Reservoir`] owns the vectors and their event timestamps, oldest first. It is bounded twice:
//! by `capacity` (the oldest vector leaves when a new one arrives at a full buffer) and by
//! `max_age_ms` in event time (TRAINING_DAYS): vectors older than the newest timestamp seen minus
//! `max_age_ms` leave. Vectors are kept in timestamp order (a late vector is inserted in its place,
//! which costs a shift but is rare), so "oldest" means oldest in event time for both bounds; a
//! vector already outside the age window, or older than everything in a full buffer, is refused.
//!
//! [`AnomalyGate`] decides what trees may learn from: vectors the current model predicts anomalous
//! are kept out of the training rows, so an incident does not teach the model that incidents are
//! normal. They stay in the reservoir for the threshold, though: `offset_` must flag the
//! contamination fraction of what actually arrives, and re-estimating it on gated rows alone
//! (whose anomalous tail the gate has cut off) would move the threshold inward at every retrain
//! and ratchet the flagged fraction up. Held strictly, the gate would also keep out every vector
//! after a level shift (a deploy, a bigger node) and the model would flag everything forever; so
//! it opens while the recently flagged fraction says the anomalies have become the norm, and
//! closes again once the model has caught up.
//!
//! Nothing here trains or publishes models; the retrain loop passes [`Reservoir::training_rows`]
//! and [`Reservoir::rows`] to [`IsolationForest::retrained`].

use std::collections::VecDeque;

use thiserror::Error;

use crate::iforest::{IsolationForest, IsolationForestError};

#[derive(Debug, Clone, PartialEq, Error)]
pub enum ReservoirError {
    #[error("a reservoir needs at least one feature")]
    NoFeatures,
    #[error("a reservoir needs a capacity of at least one vector")]
    NoCapacity,
    #[error("the gate window must hold at least one vector")]
    NoWindow,
    #[error("the gate's max_flagged_fraction must be in (0, 1], got {0}")]
    BadFlaggedFraction(f64),
    #[error("a vector has {found} features but the reservoir holds {expected}")]
    FeatureCount { expected: usize, found: usize },
    #[error("feature {feature} is {value}: every value must be finite")]
    NonFinite { feature: usize, value: f64 },
    #[error("the gate's model cannot score the vector: {0}")]
    Model(#[from] IsolationForestError),
}

/// A bounded, time-limited buffer of recent feature vectors, oldest first.
#[derive(Debug, Clone)]
pub struct Reservoir {
    n_features: usize,
    capacity: usize,
    max_age_ms: Option<u64>,
    /// Row-major values, `n_features` per vector.
    values: VecDeque<f64>,
    timestamps: VecDeque<i64>,
    /// Per vector: whether trees may be grown on it (false for vectors the gate kept out).
    trainable: VecDeque<bool>,
    /// The newest event time pushed or expired to: "now" for age limits.
    newest_ms: Option<i64>,
}

impl Reservoir {
    /// `max_age_ms` = `None` keeps vectors until capacity pushes them out.
    pub fn new(
        n_features: usize,
        capacity: usize,
        max_age_ms: Option<u64>,
    ) -> Result<Reservoir, ReservoirError> {
        if n_features == 0 {
            return Err(ReservoirError::NoFeatures);
        }
        if capacity == 0 {
            return Err(ReservoirError::NoCapacity);
        }
        Ok(Reservoir {
            n_features,
            capacity,
            max_age_ms,
            // Not pre-allocated: a week of one-minute vectors may never arrive.
            values: VecDeque::new(),
            timestamps: VecDeque::new(),
            trainable: VecDeque::new(),
            newest_ms: None,
        })
    }

    /// Adds `row` observed at `timestamp_ms`, evicting what capacity and age require. Returns
    /// false (and keeps nothing) when the row is already older than the age limit, or older than
    /// every vector of a full buffer (it would be the first to leave).
    pub fn push(&mut self, timestamp_ms: i64, row: &[f64]) -> Result<bool, ReservoirError> {
        self.insert(timestamp_ms, row, true)
    }

    /// As [`Reservoir::push`], for a vector that counts for the threshold but that trees must not
    /// learn from (one the gate kept out).
    pub fn push_untrainable(
        &mut self,
        timestamp_ms: i64,
        row: &[f64],
    ) -> Result<bool, ReservoirError> {
        self.insert(timestamp_ms, row, false)
    }

    fn insert(
        &mut self,
        timestamp_ms: i64,
        row: &[f64],
        trainable: bool,
    ) -> Result<bool, ReservoirError> {
        if row.len() != self.n_features {
            return Err(ReservoirError::FeatureCount {
                expected: self.n_features,
                found: row.len(),
            });
        }
        if let Some(feature) = row.iter().position(|v| !v.is_finite()) {
            return Err(ReservoirError::NonFinite {
                feature,
                value: row[feature],
            });
        }
        self.expire(timestamp_ms);
        if self.is_expired(timestamp_ms) {
            return Ok(false);
        }
        let mut position = self.timestamps.partition_point(|&t| t <= timestamp_ms);
        if self.timestamps.len() == self.capacity {
            if position == 0 {
                return Ok(false);
            }
            self.pop_front();
            position -= 1;
        }
        if position == self.timestamps.len() {
            self.values.extend(row);
            self.timestamps.push_back(timestamp_ms);
            self.trainable.push_back(trainable);
        } else {
            self.timestamps.insert(position, timestamp_ms);
            self.trainable.insert(position, trainable);
            let at = position * self.n_features;
            for (k, &v) in row.iter().enumerate() {
                self.values.insert(at + k, v);
            }
        }
        Ok(true)
    }

    /// Advances event time to `now_ms` (never backwards) and drops the vectors it made too old,
    /// so a series that went quiet still ages out.
    pub fn expire(&mut self, now_ms: i64) {
        self.newest_ms = Some(self.newest_ms.map_or(now_ms, |t| t.max(now_ms)));
        while let Some(&oldest) = self.timestamps.front() {
            if !self.is_expired(oldest) {
                break;
            }
            self.pop_front();
        }
    }

    fn is_expired(&self, timestamp_ms: i64) -> bool {
        match (self.max_age_ms, self.newest_ms) {
            (Some(age), Some(now)) => {
                timestamp_ms < now.saturating_sub(i64::try_from(age).unwrap_or(i64::MAX))
            }
            _ => false,
        }
    }

    fn pop_front(&mut self) {
        self.timestamps.pop_front();
        self.trainable.pop_front();
        self.values.drain(..self.n_features);
    }

    /// Drops every vector (event time stays where it is): the detector does this when live data
    /// replaces a prior's rows.
    pub fn clear(&mut self) {
        self.values.clear();
        self.timestamps.clear();
        self.trainable.clear();
    }

    /// Every vector, row-major, oldest first: what the threshold is re-estimated on.
    pub fn rows(&mut self) -> &[f64] {
        self.values.make_contiguous()
    }

    /// The vectors trees may be grown on (all but the gated ones), row-major, oldest first.
    pub fn training_rows(&mut self) -> Vec<f64> {
        let values = self.values.make_contiguous();
        values
            .chunks_exact(self.n_features)
            .zip(&self.trainable)
            .filter(|(_, trainable)| **trainable)
            .flat_map(|(row, _)| row)
            .copied()
            .collect()
    }

    /// Every vector's values, row-major, oldest first, without rearranging the buffer (for a
    /// snapshot taken through `&self`).
    pub fn values(&self) -> impl ExactSizeIterator<Item = f64> + '_ {
        self.values.iter().copied()
    }

    /// Whether each vector may be trained on, oldest first.
    pub fn trainable(&self) -> impl ExactSizeIterator<Item = bool> + '_ {
        self.trainable.iter().copied()
    }

    /// The vectors' timestamps, oldest first.
    pub fn timestamps(&self) -> impl ExactSizeIterator<Item = i64> + '_ {
        self.timestamps.iter().copied()
    }

    pub fn len(&self) -> usize {
        self.timestamps.len()
    }

    pub fn is_empty(&self) -> bool {
        self.timestamps.is_empty()
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }
}

/// What [`AnomalyGate::offer`] did with a vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Predicted normal, and pushed.
    Admitted,
    /// Predicted anomalous while most recent vectors were too: a level shift, pushed.
    AdmittedAsShift,
    /// Predicted anomalous: kept for the threshold, but not trained on.
    Gated,
    /// Older than the reservoir's age limit, kept out.
    TooOld,
}

/// Keeps vectors the model flags out of the reservoir's training rows, except during a level shift.
#[derive(Debug, Clone)]
pub struct AnomalyGate {
    window: usize,
    max_flagged_fraction: f64,
    /// Whether each of the last `window` offered vectors was predicted anomalous.
    recent: VecDeque<bool>,
    flagged: usize,
}

impl Default for AnomalyGate {
    /// A window of 256 vectors, opened when more than half of them are flagged: at the default
    /// contamination (3%) half flagged is far outside chance, and it takes a sustained shift of
    /// over two hundred steps (about four hours at a one-minute step) to open it.
    fn default() -> Self {
        AnomalyGate {
            window: 256,
            max_flagged_fraction: 0.5,
            recent: VecDeque::with_capacity(256),
            flagged: 0,
        }
    }
}

impl AnomalyGate {
    /// Opens the gate to anomalous vectors while more than `max_flagged_fraction` of the last
    /// `window` offered vectors (once `window` have been offered) were flagged.
    pub fn new(window: usize, max_flagged_fraction: f64) -> Result<AnomalyGate, ReservoirError> {
        if window == 0 {
            return Err(ReservoirError::NoWindow);
        }
        if !(max_flagged_fraction > 0.0 && max_flagged_fraction <= 1.0) {
            return Err(ReservoirError::BadFlaggedFraction(max_flagged_fraction));
        }
        Ok(AnomalyGate {
            window,
            max_flagged_fraction,
            recent: VecDeque::with_capacity(window),
            flagged: 0,
        })
    }

    /// Scores `row` with `model` and pushes it into `reservoir`, trainable unless it is anomalous
    /// outside a level shift.
    pub fn offer(
        &mut self,
        reservoir: &mut Reservoir,
        model: &IsolationForest,
        timestamp_ms: i64,
        row: &[f64],
    ) -> Result<Admission, ReservoirError> {
        let anomalous = model.predict_row(row)? == -1;
        if self.recent.len() == self.window && self.recent.pop_front() == Some(true) {
            self.flagged -= 1;
        }
        self.recent.push_back(anomalous);
        self.flagged += usize::from(anomalous);
        let admission = match (anomalous, self.shifted()) {
            (false, _) => Admission::Admitted,
            (true, true) => Admission::AdmittedAsShift,
            (true, false) => Admission::Gated,
        };
        let trainable = admission != Admission::Gated;
        Ok(if reservoir.insert(timestamp_ms, row, trainable)? {
            admission
        } else {
            Admission::TooOld
        })
    }

    /// The fraction of the last offered vectors (up to `window`) that were flagged.
    pub fn flagged_fraction(&self) -> f64 {
        if self.recent.is_empty() {
            0.0
        } else {
            self.flagged as f64 / self.recent.len() as f64
        }
    }

    fn shifted(&self) -> bool {
        self.recent.len() == self.window && self.flagged_fraction() > self.max_flagged_fraction
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iforest::IsolationForestParams;
    use crate::rng::Rng;

    #[test]
    fn capacity_evicts_the_oldest_first() {
        let mut r = Reservoir::new(2, 3, None).unwrap();
        for t in 0..5 {
            assert!(r.push(t, &[t as f64, -(t as f64)]).unwrap());
        }
        assert_eq!(r.len(), 3);
        assert_eq!(r.rows(), &[2.0, -2.0, 3.0, -3.0, 4.0, -4.0]);
        assert_eq!(r.timestamps().collect::<Vec<_>>(), vec![2, 3, 4]);
        // A late vector evicts the oldest; one older than all of a full buffer is refused.
        assert!(r.push_untrainable(3, &[9.0, 9.0]).unwrap());
        assert_eq!(r.timestamps().collect::<Vec<_>>(), vec![3, 3, 4]);
        assert_eq!(r.rows(), &[3.0, -3.0, 9.0, 9.0, 4.0, -4.0]);
        assert!(!r.push(1, &[0.0, 0.0]).unwrap());
        assert_eq!(r.len(), 3);
        // Untrainable vectors count for the threshold rows only.
        assert_eq!(r.training_rows(), vec![3.0, -3.0, 4.0, -4.0]);
        assert_eq!(r.trainable().collect::<Vec<_>>(), vec![true, false, true]);
    }

    #[test]
    fn age_limit_expires_by_event_time() {
        let mut r = Reservoir::new(1, 100, Some(1_000)).unwrap();
        for t in [0, 400, 800, 1_200] {
            r.push(t, &[t as f64]).unwrap();
        }
        // At 1200 the cut-off is 200: the vector at 0 is gone.
        assert_eq!(r.timestamps().collect::<Vec<_>>(), vec![400, 800, 1_200]);
        // A vector older than the window is refused; a late one inside it takes its place in time.
        assert!(!r.push(100, &[0.0]).unwrap());
        assert!(r.push(300, &[3.0]).unwrap());
        assert_eq!(
            r.timestamps().collect::<Vec<_>>(),
            vec![300, 400, 800, 1_200]
        );
        assert_eq!(r.rows(), &[3.0, 400.0, 800.0, 1_200.0]);
        // Time passing without data ages vectors out too, and never runs backwards.
        r.expire(2_100);
        r.expire(0);
        assert_eq!(r.timestamps().collect::<Vec<_>>(), vec![1_200]);
        r.expire(10_000);
        assert!(r.is_empty());
    }

    #[test]
    fn bad_vectors_and_settings_are_refused() {
        assert_eq!(
            Reservoir::new(0, 1, None).err(),
            Some(ReservoirError::NoFeatures)
        );
        assert_eq!(
            Reservoir::new(1, 0, None).err(),
            Some(ReservoirError::NoCapacity)
        );
        let mut r = Reservoir::new(2, 4, None).unwrap();
        assert_eq!(
            r.push(0, &[1.0]),
            Err(ReservoirError::FeatureCount {
                expected: 2,
                found: 1
            })
        );
        assert!(matches!(
            r.push(0, &[1.0, f64::NAN]),
            Err(ReservoirError::NonFinite { feature: 1, .. })
        ));
        assert!(r.is_empty());
        assert_eq!(
            AnomalyGate::new(0, 0.5).err(),
            Some(ReservoirError::NoWindow)
        );
        assert_eq!(
            AnomalyGate::new(5, 0.0).err(),
            Some(ReservoirError::BadFlaggedFraction(0.0))
        );
    }

    #[test]
    fn the_gate_keeps_rare_anomalies_out_but_opens_for_a_level_shift() {
        let mut rng = Rng::new(1);
        let data: Vec<f64> = (0..1_000).map(|_| rng.next_f64()).collect();
        let rows = crate::row_major(&data, 2).unwrap();
        let model = IsolationForest::fit(&IsolationForestParams::default(), rows).unwrap();
        let mut reservoir = Reservoir::new(2, 10_000, None).unwrap();
        let mut gate = AnomalyGate::new(20, 0.5).unwrap();
        // Normal vectors enter; a lone far vector does not.
        for t in 0..30 {
            let row = [rng.next_f64() * 0.5 + 0.25, rng.next_f64() * 0.5 + 0.25];
            let admitted = gate.offer(&mut reservoir, &model, t, &row).unwrap();
            assert_eq!(admitted, Admission::Admitted);
        }
        assert_eq!(
            gate.offer(&mut reservoir, &model, 30, &[9.0, 9.0]).unwrap(),
            Admission::Gated
        );
        assert_eq!(reservoir.len(), 31);
        assert_eq!(reservoir.training_rows().len(), 30 * 2);
        assert_eq!(reservoir.trainable().last(), Some(false));
        // A sustained shift: gated until more than half of the last 20 were flagged, then admitted.
        let outcomes: Vec<Admission> = (31..60)
            .map(|t| gate.offer(&mut reservoir, &model, t, &[9.0, 9.0]).unwrap())
            .collect();
        let first_open = outcomes
            .iter()
            .position(|&a| a == Admission::AdmittedAsShift);
        // 1 flagged before + k more out of 20 > 10 when k = 10: the 10th shifted vector opens it.
        assert_eq!(first_open, Some(9));
        assert!(outcomes[..9].iter().all(|&a| a == Admission::Gated));
        assert!(
            outcomes[9..]
                .iter()
                .all(|&a| a == Admission::AdmittedAsShift)
        );
        assert_eq!(reservoir.len(), 31 + 29);
        assert_eq!(reservoir.training_rows().len(), (30 + 20) * 2);
        assert!(gate.flagged_fraction() > 0.5);
    }
}
