//! Event-time stepping: which step timestamps are due for evaluation.
//!
//! The watermark is the newest sample timestamp received minus the allowed lateness: by then,
//! samples up to the watermark can be expected to have arrived. A step `T` (a multiple of the
//! step since the Unix epoch) is due once the watermark reaches it, and each step is handed out
//! exactly once, in order. Live streams, replayed files and backfilled history all advance the
//! same way, because only sample timestamps move the watermark.
//!
//! The store's retention is measured back from the newest timestamp, so a step can only be
//! evaluated while its look-back is still held: event time must not run further ahead of the
//! evaluation than `limits.retention` minus the features' look-back. Live streams advance in
//! real time and `replay` evaluates after every row, so neither comes near it; a sender that
//! bursts hours of old samples at once would see the skipped steps as gaps.

/// Hands out due step timestamps, each once.
#[derive(Debug, Clone)]
pub struct Stepper {
    step_ms: i64,
    lateness_ms: i64,
    /// The most steps handed out by one call: a watermark that jumps (a long gap, a replay)
    /// yields the most recent steps only, those any history can still hold.
    max_catch_up: usize,
    last: Option<i64>,
}

impl Stepper {
    pub fn new(step_ms: i64, lateness_ms: i64, max_catch_up: usize) -> Stepper {
        Stepper {
            step_ms: step_ms.max(1),
            lateness_ms,
            max_catch_up: max_catch_up.max(1),
            last: None,
        }
    }

    pub(crate) fn step_ms(&self) -> i64 {
        self.step_ms
    }

    /// The watermark for the newest received timestamp.
    pub(crate) fn watermark(&self, newest_ms: i64) -> i64 {
        newest_ms.saturating_sub(self.lateness_ms)
    }

    /// The last step handed out.
    pub(crate) fn last(&self) -> Option<i64> {
        self.last
    }

    /// The steps that became due since the previous call, oldest first.
    pub(crate) fn due(&mut self, newest_ms: Option<i64>) -> Vec<i64> {
        let Some(newest) = newest_ms else {
            return Vec::new();
        };
        let latest = self.watermark(newest).div_euclid(self.step_ms) * self.step_ms;
        let first = match self.last {
            Some(last) if latest <= last => return Vec::new(),
            Some(last) => last + self.step_ms,
            // The first step is the latest one: there is no earlier history worth a backlog.
            None => latest,
        };
        let count = ((latest - first) / self.step_ms + 1) as usize;
        let skip = count.saturating_sub(self.max_catch_up) as i64;
        let steps: Vec<i64> = (skip..count as i64)
            .map(|k| first + k * self.step_ms)
            .collect();
        self.last = Some(latest);
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_are_multiples_due_after_lateness_and_handed_out_once() {
        let mut s = Stepper::new(30_000, 5_000, 100);
        assert!(s.due(None).is_empty());
        // newest 64s, watermark 59s: the latest multiple of 30s is 30s
        assert_eq!(s.due(Some(64_000)), [30_000]);
        assert!(s.due(Some(64_000)).is_empty(), "each step once");
        assert!(
            s.due(Some(64_999)).is_empty(),
            "60s is not due before the watermark reaches it"
        );
        assert_eq!(s.due(Some(65_000)), [60_000]);
        assert_eq!(s.due(Some(126_000)), [90_000, 120_000]);
        assert!(
            s.due(Some(10_000)).is_empty(),
            "the watermark never goes back"
        );
    }

    #[test]
    fn a_jump_yields_only_the_most_recent_steps() {
        let mut s = Stepper::new(1_000, 0, 3);
        assert_eq!(s.due(Some(0)), [0]);
        assert_eq!(s.due(Some(10_000)), [8_000, 9_000, 10_000]);
    }
}
