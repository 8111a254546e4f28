//! The anomaly likelihood: what turns the isolation forest's score s into a number worth
//! alerting on, the same on every stream.
//!
//! The forest's s is not comparable from one stream to the next: its typical level depends on
//! the data's shape (a noisy series sits near 0.45, a smooth one near 0.35), so no single
//! threshold serves two streams. What is comparable is how rare a score is *for the model that
//! gave it*. Three stages, all cheap enough for every entity at every step:
//!
//! 1. **Tail probability** ([`ScoreReference::tail_probability`]): each training ends by scoring
//!    the model's own reservoir (the recent vectors it was trained and thresholded on, anomalous
//!    ones included) with the new forest. A live score s gets p = (k + ½) / (n + 1), where k of
//!    those n reference scores are ≥ s: the probability that a recent step of this stream scored
//!    at least as high. It is rank-based, so it does not care how s is distributed, and it is
//!    re-estimated with the forest, so it follows the model as the model follows the stream. A
//!    score beyond every reference score gets p = ½ / (n + 1): a model that has seen n vectors
//!    cannot claim more than "rarer than anything in n".
//! 2. **Surprise, smoothed** ([`EntityLikelihood::update`]): −log10 p, averaged over the entity's
//!    last `window` steps. One odd step among normal ones is halved; an incident, which lasts,
//!    is not. On the labelled benchmark this average of two steps was worth more than any other
//!    smoothing tried (longer means, exponential weights, a Gaussian of past surprises as HTM
//!    does on its raw score).
//! 3. **Suppression**: for `suppress_ms` of event time after an alert, the surprise is halved,
//!    so an incident raises one alert rather than a flapping series of them; a step twice as
//!    surprising as the threshold still alerts.
//!
//! The result is reported as a likelihood in [0, 1): 1 − 10^(−surprise), so 0.999 reads "as rare
//! as one step in a thousand". It is what `canopy_anomaly` is decided on.
//!
//! Pure computation: no clock, no metrics, no I/O. The live detector and `replay` call the same
//! [`EntityLikelihood::update`] through `Detector::on_step`.

use std::collections::VecDeque;

use super::iforest::{IsolationForest, IsolationForestError};
use super::matrix::row_major;

/// The forest's scores of its own training reservoir, sorted, taken when the forest was built.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreReference {
    sorted: Vec<f64>,
}

impl ScoreReference {
    /// A reference from anomaly scores s (any order; non-finite scores are left out).
    pub(crate) fn new(mut scores: Vec<f64>) -> ScoreReference {
        scores.retain(|s| s.is_finite());
        scores.sort_by(f64::total_cmp);
        ScoreReference { sorted: scores }
    }

    /// `forest`'s reference: its anomaly scores of `rows` (row-major, the forest's width), the
    /// reservoir it was trained and thresholded on. Empty if the rows do not fit the forest.
    pub fn of(forest: &IsolationForest, rows: &[f64]) -> ScoreReference {
        let scores = row_major(rows, forest.n_features())
            .map_err(IsolationForestError::from)
            .and_then(|rows| forest.anomaly_scores(rows));
        ScoreReference::new(scores.map(|s| s.to_vec()).unwrap_or_default())
    }

    /// p = (k + ½) / (n + 1), where k reference scores are ≥ `score`. 1 for an empty reference
    /// (nothing is surprising to a model that has seen nothing).
    pub fn tail_probability(&self, score: f64) -> f64 {
        let n = self.sorted.len();
        if n == 0 {
            return 1.0;
        }
        let below = self.sorted.partition_point(|&x| x < score);
        ((n - below) as f64 + 0.5) / (n as f64 + 1.0)
    }
}

/// How the likelihood is computed and when it alerts: the model's `likelihood_window`,
/// `threshold` and `suppress` keys.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LikelihoodParams {
    /// Steps averaged (at least 1; the config bounds it).
    pub window: usize,
    /// The likelihood at or above which a step is flagged, in (0, 1).
    pub threshold: f64,
    /// Event time after an alert during which the surprise is halved; 0 disables it.
    pub suppress_ms: i64,
    /// The period after which an entity's surprising steps recur (a day: a nightly job);
    /// a step within `recurrence_tolerance_ms` of one a period earlier has its surprise
    /// halved. 0 disables it.
    pub recurrence_ms: i64,
    /// How far from exactly one period earlier a surprising step still counts as the same.
    pub recurrence_tolerance_ms: i64,
    /// log10(step / rarity unit): added to each step's surprise, so that p reads per unit of
    /// time rather than per step (0: per step).
    pub surprise_offset: f64,
}

/// One entity's likelihood state: its last surprises and when it last alerted.
#[derive(Debug, Clone, Default)]
pub struct EntityLikelihood {
    /// The last `window` surprises, oldest first (as many as the window).
    recent: VecDeque<f64>,
    last_alert_ms: Option<i64>,
    /// The spans of event time in the last period (and tolerance) whose smoothed surprise,
    /// before any halving, reached the threshold's: `(first, last)` step times, oldest first.
    surprising: VecDeque<(i64, i64)>,
}

/// The most spans of surprising steps an entity keeps (the oldest go first).
const MAX_SURPRISING_SPANS: usize = 64;

/// One step's result for one entity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Likelihood {
    /// 1 − 10^(−smoothed, suppressed surprise), in [0, 1).
    pub(crate) likelihood: f64,
    /// `likelihood >= threshold`.
    pub(crate) alert: bool,
}

impl EntityLikelihood {
    /// Takes the step at `t_ms` whose score had tail probability `p` and returns its likelihood.
    pub fn update(&mut self, params: &LikelihoodParams, t_ms: i64, p: f64) -> Likelihood {
        let window = params.window.max(1);
        let surprise = (-p.clamp(f64::MIN_POSITIVE, 1.0).log10() + params.surprise_offset).max(0.0);
        self.recent.push_back(surprise);
        while self.recent.len() > window {
            self.recent.pop_front();
        }
        let mut smoothed = self.recent.iter().sum::<f64>() / self.recent.len() as f64;
        let after_alert = params.suppress_ms > 0
            && self
                .last_alert_ms
                .is_some_and(|last| t_ms >= last && t_ms - last <= params.suppress_ms);
        let recurring = self.recurs(params, t_ms, smoothed);
        if after_alert || recurring {
            smoothed *= 0.5;
        }
        let likelihood = 1.0 - 10f64.powf(-smoothed);
        let alert = likelihood >= params.threshold;
        if alert {
            self.last_alert_ms = Some(t_ms);
        }
        Likelihood { likelihood, alert }
    }

    /// Records the step when its smoothed surprise reaches the threshold's, and says whether a
    /// surprising step was recorded about one period earlier.
    fn recurs(&mut self, params: &LikelihoodParams, t_ms: i64, smoothed: f64) -> bool {
        if params.recurrence_ms <= 0 {
            return false;
        }
        let tolerance = params.recurrence_tolerance_ms.max(0);
        // One period earlier, within the tolerance; spans ending before it are of no more use.
        let (from, to) = (
            t_ms - params.recurrence_ms - tolerance,
            t_ms - params.recurrence_ms + tolerance,
        );
        while self
            .surprising
            .front()
            .is_some_and(|&(_, last)| last < from)
        {
            self.surprising.pop_front();
        }
        let recurring = self
            .surprising
            .iter()
            .any(|&(first, last)| first <= to && last >= from);
        if smoothed >= -(1.0 - params.threshold).log10() {
            match self.surprising.back_mut() {
                Some((_, last)) if t_ms >= *last && t_ms - *last <= tolerance => *last = t_ms,
                _ => {
                    if self.surprising.len() == MAX_SURPRISING_SPANS {
                        self.surprising.pop_front();
                    }
                    self.surprising.push_back((t_ms, t_ms));
                }
            }
        }
        recurring
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(window: usize, suppress_ms: i64) -> LikelihoodParams {
        LikelihoodParams {
            window,
            threshold: 0.99,
            suppress_ms,
            recurrence_ms: 0,
            recurrence_tolerance_ms: 0,
            surprise_offset: 0.0,
        }
    }

    #[test]
    fn tail_probability_is_the_smoothed_rank_among_the_reference() {
        // 9 reference scores 0.1..0.9: a score of 0.85 has one (0.9) at or above it.
        let r = ScoreReference::new((1..=9).rev().map(|k| f64::from(k) / 10.0).collect());
        assert_eq!(r.tail_probability(0.85), 1.5 / 10.0);
        assert_eq!(
            r.tail_probability(0.9),
            1.5 / 10.0,
            "ties count as at or above"
        );
        assert_eq!(r.tail_probability(0.0), 9.5 / 10.0);
        assert_eq!(
            r.tail_probability(5.0),
            0.5 / 10.0,
            "beyond every reference score"
        );
        assert_eq!(ScoreReference::default().tail_probability(0.9), 1.0);
        let with_nan = ScoreReference::new(vec![f64::NAN, 0.5]);
        assert_eq!(with_nan.sorted.len(), 1);
    }

    #[test]
    fn surprise_is_averaged_over_the_window() {
        let mut e = EntityLikelihood::default();
        let p = params(2, 0);
        // p = 0.1 is a surprise of 1; p = 0.001 a surprise of 3.
        let a = e.update(&p, 0, 0.1);
        assert!((a.likelihood - 0.9).abs() < 1e-12, "{a:?}");
        let b = e.update(&p, 60_000, 0.001);
        assert!(
            (b.likelihood - 0.99).abs() < 1e-12,
            "mean surprise 2: {b:?}"
        );
        assert!(b.alert, "0.99 is at the threshold");
        let c = e.update(&p, 120_000, 0.1);
        assert!((c.likelihood - 0.99).abs() < 1e-12, "window of two: {c:?}");
        let d = e.update(&p, 180_000, 0.1);
        assert!(
            (d.likelihood - 0.9).abs() < 1e-12,
            "the spike left the window: {d:?}"
        );
    }

    #[test]
    fn an_alert_halves_the_surprise_for_the_suppression_time() {
        let mut e = EntityLikelihood::default();
        let p = params(1, 600_000);
        assert!(e.update(&p, 0, 0.001).alert, "surprise 3 alerts");
        let again = e.update(&p, 60_000, 0.001);
        assert!(!again.alert, "halved to 1.5 within 10 minutes: {again:?}");
        assert!(
            e.update(&p, 120_000, 0.000_001).alert,
            "twice the threshold's surprise still alerts"
        );
        assert!(
            e.update(&p, 120_000 + 600_001, 0.001).alert,
            "past the suppression time"
        );
    }

    #[test]
    fn a_surprise_a_period_after_a_surprising_step_is_halved() {
        const HOUR: i64 = 3_600_000;
        const DAY: i64 = 24 * HOUR;
        let p = LikelihoodParams {
            recurrence_ms: DAY,
            recurrence_tolerance_ms: HOUR,
            ..params(1, 0)
        };
        let mut e = EntityLikelihood::default();
        assert!(e.update(&p, 0, 0.001).alert, "the first time alerts");
        let next_day = e.update(&p, DAY + HOUR / 2, 0.001);
        assert!(!next_day.alert, "halved a day later: {next_day:?}");
        assert!(
            (next_day.likelihood - (1.0 - 10f64.powf(-1.5))).abs() < 1e-12,
            "{next_day:?}"
        );
        assert!(
            !e.update(&p, 2 * DAY + HOUR / 2, 0.001).alert,
            "the halved step still counts as surprising: the third day is halved too"
        );
        assert!(
            e.update(&p, 2 * DAY + 6 * HOUR, 0.001).alert,
            "outside the tolerance of any surprising step a day earlier"
        );
        let mut quiet = EntityLikelihood::default();
        quiet.update(&p, 0, 0.5);
        assert!(
            quiet.update(&p, DAY, 0.001).alert,
            "only surprising steps are remembered"
        );
        let mut off = EntityLikelihood::default();
        off.update(&params(1, 0), 0, 0.001);
        assert!(
            off.update(&params(1, 0), DAY, 0.001).alert,
            "off by default"
        );
    }

    #[test]
    fn an_entity_keeps_a_bounded_number_of_surprising_spans() {
        const HOUR: i64 = 3_600_000;
        let p = LikelihoodParams {
            recurrence_ms: 1_000 * HOUR,
            recurrence_tolerance_ms: HOUR / 2,
            ..params(1, 0)
        };
        let mut e = EntityLikelihood::default();
        // Surprising steps two hours apart: each starts its own span.
        for k in 0..(3 * MAX_SURPRISING_SPANS as i64) {
            e.update(&p, 2 * k * HOUR, 0.001);
            assert!(e.surprising.len() <= MAX_SURPRISING_SPANS);
        }
        assert_eq!(e.surprising.len(), MAX_SURPRISING_SPANS);
        // Steps within the tolerance of each other extend one span.
        let mut one = EntityLikelihood::default();
        for k in 0..100 {
            one.update(&p, k * 60_000, 0.001);
        }
        assert_eq!(one.surprising.len(), 1);
    }

    #[test]
    fn the_surprise_offset_reads_p_per_unit_of_time_and_never_below_zero() {
        // An hourly model read per 5 minutes: p = 0.01 per hour is 0.01/12 per 5 minutes.
        let p = LikelihoodParams {
            surprise_offset: 12f64.log10(),
            ..params(1, 0)
        };
        let hourly = EntityLikelihood::default().update(&p, 0, 0.01);
        assert!(
            (hourly.likelihood - (1.0 - 0.01 / 12.0)).abs() < 1e-12,
            "{hourly:?}"
        );
        assert!(hourly.alert, "surprise 3.08 reaches the threshold's 2");
        // A one-minute model read per 5 minutes: p = 0.5 per minute is certain per 5 minutes.
        let p = LikelihoodParams {
            surprise_offset: 0.2f64.log10(),
            ..params(1, 0)
        };
        let minutely = EntityLikelihood::default().update(&p, 0, 0.5);
        assert_eq!(minutely.likelihood, 0.0, "{minutely:?}");
    }
}
